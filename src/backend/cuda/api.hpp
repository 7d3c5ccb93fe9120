// The CUDA backend as seen from device-neutral code. Front ends call these;
// without the CUDA toolkit, backend/no_cuda/cuda_stubs.cpp implements them by
// throwing NotCompiledError, so op code never needs #ifdefs.
// No CUDA headers here: this file is included by plain C++ translation units.
//
// Every function enqueues on the device's current stream and returns without
// waiting, except those marked host-facing. Sizes that live on the device
// (active rows, edge counts) are passed as device arrays and read by kernels.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "lattice/core/array.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"
#include "relation/parts.hpp"

namespace lattice::cuda {

// ---- runtime (runtime.cpp) ---------------------------------------------------
bool compiled();
int device_count();
std::string device_name(int device);
// "simt", "mma" (sm_80+) or "wgmma" (sm_90a code on an sm_90 device).
std::string capability_tier(int device);
std::string runtime_version();

void* current_stream(int device);
void set_current_stream(int device, void* stream);
// cudaStreamLegacy: the handle that names the legacy default stream, which a
// null handle cannot (set_current_stream(d, nullptr) means lattice's own stream).
void* legacy_default_stream();
// Host-facing: waits for the current stream and raises any error a kernel recorded.
void synchronize(int device);

// Stream-ordered allocation from the device's memory pool (cached, never
// returned to the driver), on `stream`.
void* allocate(std::size_t bytes, int device, void* stream);
void deallocate(void* ptr, int device, void* stream) noexcept;
// Copies where at least one side is a CUDA device. Host-facing when the
// destination is the host (waits, then raises recorded kernel errors).
void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);

// ---- arrays (array_ops.cu) ---------------------------------------------------
void fill(Array& out, double value);
void astype(const Array& src, Array& dst);
// Dense 5-D (C_out, Kx, Ky, Kz, C_in) or pointwise (C_out, C_in) -> (K, C_in, C_out).
Array to_kernel_major(const Array& weight);

// ---- relations (relation.cu) -------------------------------------------------
detail::SupportParts forward_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride,
                                     const char* op);
detail::SupportParts transposed_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride,
                                        bool apply_padding, const char* op);
detail::EdgeParts build_edges(const CoordinateSet& input, const CoordinateSet& output, RelationKind kind,
                              const KernelSpec& spec, const char* op);
// Checks the active rows of `set` on the device (batch range, divisibility by
// the stride, key range; sticky errors naming `op`).
void check_coordinates(const CoordinateSet& set, const char* op);
// Checks that the active rows of `set` are unique (sticky error otherwise) and
// caches the device hash index on it.
void check_unique(const CoordinateSet& set, const char* op);

// ---- views (views.cu) -------------------------------------------------------
OutputCsr build_output_csr(const Relation& rel);
InputCsr build_input_csr(const Relation& rel);
KernelCsr build_kernel_csr(const Relation& rel);
ImplicitGemmMap build_implicit_gemm_map(const Relation& rel);
InputGemmMap build_input_gemm_map(const Relation& rel);
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation& rel, int tile_rows);

// ---- convolution (conv.cu, conv_igemm*.cu) --------------------------------------
struct ConvOptions {
  ops::ConvRoute route = ops::ConvRoute::automatic;
  bool allow_tf32 = false;
  // Fused epilogue (ops::ConvEpilogue): device pointers, null when absent.
  const float* scale = nullptr;
  const float* shift = nullptr;
  const void* residual = nullptr;  // (rows, C_out), feature dtype
  bool relu = false;
};
// out[o] = bias + sum over edges of feats[i] * weight[k]; weight (K, C_in, C_out)
// in the feature dtype. Returns the route that ran.
ops::ConvRoute conv_relation(const Relation& rel, const Array& feats, const Array& weight,
                             const std::optional<Array>& bias, Array& out, const ConvOptions& options);
// out[r] = bias + feats[r] * weight[0] for r < *rows.
ops::ConvRoute conv_pointwise(const Array& feats, const Array& rows, const Array& weight,
                              const std::optional<Array>& bias, Array& out, const ConvOptions& options);

// ---- feature ops (features.cu) ------------------------------------------------
// saved: training only, (2, C) float64 batch mean and 1 / sqrt(var + eps) (may be null).
void batch_norm(const Array& x, const Array& rows, const ops::BatchNormArgs& args, Array& out, Array& running_mean,
                Array& running_var, Array* saved = nullptr);
void activation(const Array& x, const Array& rows, const ops::ActivationParams& params, Array& out);
void add_rows(const Array& a, const Array& b, const Array& rows, Array& out);
void cat_channels(const Array& a, const Array& b, const Array& rows, Array& out);

// ---- pooling (pooling.cu) -----------------------------------------------------
void pool(const Relation& rel, const Array& feats, ops::PoolMode mode, Array& out);
// out (B, C): rows grouped by batch column; batch indices >= B and max over an
// empty item are recorded as sticky errors naming `op`.
void global_pool(const CoordinateSet& set, const Array& feats, ops::PoolMode mode, Array& out, const char* op);
// Host-facing: the largest batch index among the active rows (-1 when empty).
std::int64_t max_batch(const CoordinateSet& set);

// ---- point -> voxel (voxelize.cu) ---------------------------------------------
struct VoxelizeResult {
  Array coords;        // (N, 4) int32 physical; rows past *active_rows are capacity
  Array active_rows;   // int32 scalar
  Array feats;         // (N, C)
  Array inverse_rows;  // (N,) int32
  Array counts;        // (N,) int32, rows past *active_rows are 0
};
// Sticky errors (non-finite points, batch ids, key range) name `op`.
VoxelizeResult voxelize(const Array& points, const std::optional<Array>& feats,
                        const std::optional<Array>& batch_indices, const ops::VoxelizeParams& params,
                        const char* op = "voxelize");

// ---- timing (runtime.cpp) ----------------------------------------------------
// An event recorded on the device's current stream; elapsed_ms is host-facing.
class Event {
 public:
  explicit Event(int device);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record();
  static float elapsed_ms(const Event& start, const Event& stop);

 private:
  int device_;
  void* event_;
};

}  // namespace lattice::cuda

// Later op families (and their gradients), one header each.
#include "backend/cuda/api_conv_grad.hpp"
#include "backend/cuda/api_features_grad.hpp"
#include "backend/cuda/api_neighbors.hpp"
#include "backend/cuda/api_points.hpp"
#include "backend/cuda/api_pooling_grad.hpp"
#include "backend/cuda/api_resample.hpp"
#include "backend/cuda/api_rows.hpp"
#include "backend/cuda/api_sets.hpp"
#include "backend/cuda/api_train.hpp"
