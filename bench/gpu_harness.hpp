// Shared pieces of the GPU benchmarks (../shared/PERF.md): CUDA-event timing,
// the device ceilings (copy bandwidth, dense GEMM rates), result rows with
// compute and floor ratios, and fresh coordinate sets.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "lattice/lattice.hpp"

namespace lattice::bench {

#define CHECK_CUDA(x)                                                      \
  do {                                                                     \
    cudaError_t e_ = (x);                                                  \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

inline const Device k_dev = Device::cuda(0);
inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_stream(k_dev).handle); }

struct Timing {
  double median_ms = 0, min_ms = 0;
};
// Times `f` with CUDA events on the current stream: `warmup` untimed runs, then `runs` timed ones.
Timing time_it(const std::function<void()>& f, int runs, int warmup = 3);

struct Ceilings {
  double copy_bytes_per_s = 0;
  double gemm_f16 = 0, gemm_f32 = 0, gemm_tf32 = 0;  // FLOP/s
  double gemm(DType dtype, bool tf32) const {
    if (dtype == DType::f32) return tf32 ? gemm_tf32 : gemm_f32;
    return gemm_f16;  // bf16 runs at the f16 rate on Hopper
  }
};
Ceilings measure_ceilings(bool quick);

struct Row {
  std::string name, dtype;
  double flops = 0, bytes = 0, median_ms = 0, min_ms = 0;
  double compute_ratio = 0, floor_ratio = 0;
  std::int64_t voxels_in = 0, voxels_out = 0, edges = 0;
  std::string note;
};
// floor_ratio = max(flops / GEMM rate, bytes / copy bandwidth) / median time.
Row make_row(const std::string& name, DType dtype, bool tf32, double flops, double bytes, const Timing& t,
             const Ceilings& c);

// A tensor on fresh coordinates (new key, no cached index or relations): the
// start of an end-to-end pass.
SparseTensor fresh(const Array& coords, const Array& feats, std::int64_t rows);
std::int64_t peak_pool_bytes();
void reset_peak();

// The real scan (or the built-in one) voxelized at 0.05 m on the device.
struct BenchInput {
  std::string name;
  Array points;       // (N, 3) float32 on the device
  Array point_feats;  // (N, 4) float32 on the device: x, y, z, remission
  std::int64_t voxels = 0;
  Array coords;        // (voxels, 4) int32 on the device
  Array voxel_feats;   // (voxels, 4) float32 on the device
  Array inverse_rows;  // (N,) int32 point -> voxel row
};

// Memory-bound op cases (pooling, resampling, devoxelize, neighbours, sets):
// bench_gpu_ops.cpp.
void op_cases(const BenchInput& in, const Ceilings& ceil, int runs, std::vector<Row>& rows);

}  // namespace lattice::bench
