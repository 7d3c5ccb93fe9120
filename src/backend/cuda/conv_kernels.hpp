// Host-side description of one convolution launch, shared by the route
// dispatcher (conv.cu) and the kernel families (conv_simt.cu, conv_mma.cu).
// Every kernel is output-stationary: a CTA owns a tile of output rows, loops
// over the kernel offsets its rows use and over C_in, and writes each output
// element once (no floating-point atomics).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "lattice/core/dtype.hpp"

namespace lattice::cuda {

struct ConvLaunch {
  const void* x = nullptr;               // (N_in, C_in) features
  void* y = nullptr;                     // (rows_cap, C_out) output
  const void* w = nullptr;               // (K, C_in, C_out)
  const void* bias = nullptr;            // (C_out) or null
  const std::int32_t* map = nullptr;     // (rows_cap, K) input row per (row, k), -1 = none; null = identity (K = 1)
  const std::int32_t* perm = nullptr;    // sorted map: output row of sorted position j; null = j itself
  const std::uint32_t* masks = nullptr;  // (rows_cap, words) occupancy per row (for tile skipping), or null
  const std::uint32_t* tile_masks = nullptr;  // (tiles, words) per tile of `tile_rows` sorted rows, or null
  int tile_rows = 0;
  const std::int32_t* count = nullptr;  // device: active output rows
  // Fused epilogue: y = relu?((acc + bias) * scale + shift + residual[o]).
  const float* scale = nullptr;
  const float* shift = nullptr;
  const void* residual = nullptr;  // (rows_cap, C_out), same dtype, indexed by output row
  bool relu = false;
  std::int64_t rows_cap = 0;
  int cin = 0, cout = 0, volume = 1, words = 1;
  DType dtype = DType::f32;
  cudaStream_t stream = nullptr;
};

// General route: any dtype and channel count (SIMT, float32/float64 accumulation).
void launch_conv_simt(const ConvLaunch& p);
// Tensor-core route for float16 / bfloat16 (mma m16n8k16) and float32 (TF32
// m16n8k8: 3xTF32 split for float32 accuracy, or single TF32 with
// allow_tf32), with 16-byte rows (C_in, C_out multiples of 8 or 4) and
// 16-byte aligned buffers.
bool conv_mma_supported(const ConvLaunch& p);
void launch_conv_mma(const ConvLaunch& p, int tile_config, bool allow_tf32);
// Tile rows of the mma kernel's configurations (for building matching sorted maps).
int conv_mma_tile_rows(int tile_config);
int conv_mma_configs();

// Weight gradient on the tensor cores (conv_wgrad_mma.cu): per-slice partials
// out[s][k] = sum over slice s of offset k's edges of x[in]^T dy[out].
struct WgradLaunch {
  const void* x = nullptr;              // (N_in, C_in)
  const void* dy = nullptr;             // (N_out, C_out)
  float* out = nullptr;                 // (slices, K, C_in, C_out) float32 partials
  const std::int32_t* pairs = nullptr;  // (edges, 2) (in row, out row) in kernel-CSR order; null: identity
  const std::int32_t* koff = nullptr;   // (K + 1) kernel-CSR offsets; null: identity over [0, *rows)
  const std::int32_t* rows = nullptr;   // device: active rows of the identity
  std::int64_t x_capacity = 0;
  int volume = 1, cin = 0, cout = 0, slices = 1;
  DType dtype = DType::f32;
  cudaStream_t stream = nullptr;
};
// float16 / bfloat16 / float32 with 16-byte rows and 16-byte aligned buffers.
bool wgrad_mma_supported(DType dtype, int cin, int cout, const void* x, const void* dy);
// Edge slices per offset for a shape (a function of the shape only).
int wgrad_mma_slices(int volume, int cin, int cout);
void launch_wgrad_mma(const WgradLaunch& p);

}  // namespace lattice::cuda
