// CUDA convolution routes and the route selector (SPEC §11).
//
//   implicit_gemm         output-stationary over the implicit-GEMM map: the
//                         tensor-core kernel (conv_mma.cu) when its predicate
//                         holds, else the general SIMT kernel (conv_simt.cu)
//   sorted_implicit_gemm  the same over the occupancy-sorted map: tiles skip
//                         the offsets none of their rows use
//   gather_gemm_scatter   per offset: gather rows, cuBLAS GEMM, add rows into
//                         the output (no atomics: one offset at a time). Needs
//                         per-offset sizes on the host: read once per relation
//                         and cached, so it is a fallback / tuning candidate and
//                         never the default (SPEC §14).
// The default (automatic) never waits for the host.
#include <array>
#include <bit>
#include <map>
#include <mutex>

#include <cublas_v2.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/conv_epilogue.cuh"
#include "backend/cuda/tuning/conv_routes.hpp"
#include "lattice/core/determinism.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;

#define LATTICE_CUBLAS_CHECK(call)                                                                           \
  do {                                                                                                       \
    const cublasStatus_t st_ = (call);                                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                      \
      throw DeviceError(lattice::detail::concat("[cuda] ", #call, " failed: ", cublasGetStatusString(st_))); \
    }                                                                                                        \
  } while (0)

// One cuBLAS handle per thread and device, bound to the current stream at each use.
cublasHandle_t cublas(Device device, cudaStream_t stream) {
  thread_local std::array<cublasHandle_t, 64> handles{};
  cublasHandle_t& h = handles[static_cast<std::size_t>(device.index)];
  if (h == nullptr) {
    LATTICE_CUDA_CHECK(cudaSetDevice(device.index));
    LATTICE_CUBLAS_CHECK(cublasCreate(&h));
  }
  LATTICE_CUBLAS_CHECK(cublasSetStream(h, stream));
  return h;
}

void set_epilogue(ConvLaunch& p, const ConvOptions& o) {
  p.scale = o.scale;
  p.shift = o.shift;
  p.residual = o.residual;
  p.relu = o.relu;
}

ConvLaunch base_launch(const Array& feats, const Array& weight, const std::optional<Array>& bias, Array& out,
                       const CoordinateSet& output) {
  ConvLaunch p;
  p.x = feats.raw();
  p.w = weight.raw();
  p.y = out.raw();
  p.bias = bias ? bias->raw() : nullptr;
  p.count = ptr<std::int32_t>(output.active_rows());
  p.rows_cap = output.capacity();
  p.cin = static_cast<int>(feats.dim(1));
  p.cout = static_cast<int>(out.dim(1));
  p.dtype = feats.dtype();
  p.stream = stream_of(feats.device());
  return p;
}

// ---- gather-GEMM-scatter (cuBLAS) -------------------------------------------------

template <class T>
__global__ void k_gather_rows(const T* x, const std::int32_t* in_rows, const std::int32_t* edge_ids, std::int64_t rows,
                              int cin, T* g) {
  LATTICE_GRID_LOOP(idx, rows * cin) {
    const std::int64_t r = idx / cin;
    g[idx] = x[static_cast<std::int64_t>(in_rows[edge_ids[r]]) * cin + idx % cin];
  }
}

template <class A>
__global__ void k_scatter_add(const A* product, const std::int32_t* out_rows, const std::int32_t* edge_ids,
                              std::int64_t rows, int cout, A* acc) {
  // Within one offset every output row appears once: plain read-modify-write.
  LATTICE_GRID_LOOP(idx, rows * cout) {
    const std::int64_t r = idx / cout;
    acc[static_cast<std::int64_t>(out_rows[edge_ids[r]]) * cout + idx % cout] += product[idx];
  }
}

template <class T, class A>
__global__ void k_init_acc(const T* bias, const std::int32_t* count, std::int64_t cap, int cout, A* acc) {
  const std::int64_t n = device::read_count(count, cap);
  LATTICE_GRID_LOOP(idx, cap * cout) { acc[idx] = (idx / cout < n && bias) ? device::load(bias[idx % cout]) : A(0); }
}

template <class T, class A>
__global__ void k_store_acc(const A* acc, ConvLaunch p, T* y) {
  const std::int64_t n = device::read_count(p.count, p.rows_cap) * p.cout;
  LATTICE_GRID_LOOP(idx, n) {
    y[idx] = device::store<T>(device::epilogue<T>(p, acc[idx], idx / p.cout, static_cast<int>(idx % p.cout)));
  }
}

template <class T>
cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, __half>) return CUDA_R_16F;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return CUDA_R_16BF;
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  return CUDA_R_64F;
}

template <class T>
void gather_gemm_scatter(const Relation& rel, const Array& feats, const Array& weight, const std::optional<Array>& bias,
                         Array& out, bool allow_tf32, const ConvLaunch& p) {
  using A = device::compute_t<T>;
  const Device dev = feats.device();
  const cudaStream_t stream = stream_of(dev);
  const auto output = rel.output();
  const std::int64_t cap = output->capacity();
  const int cin = static_cast<int>(feats.dim(1)), cout = static_cast<int>(out.dim(1));
  const std::vector<std::int32_t>& offsets = rel.host_kernel_offsets();  // read once per relation
  const KernelCsr& kcsr = rel.kernel_csr();
  const DType acc_dtype = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  Array acc = Array::empty(Shape{cap, cout}, acc_dtype, dev);
  const std::int32_t* count = ptr<std::int32_t>(output->active_rows());
  if (cap * cout > 0) {
    k_init_acc<T, A><<<grid_for(cap * cout, k_threads), k_threads, 0, stream>>>(bias ? ptr<T>(*bias) : nullptr, count,
                                                                                cap, cout, ptr<A>(acc));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  std::int64_t max_rows = 0;
  for (std::size_t k = 0; k + 1 < offsets.size(); ++k)
    max_rows = std::max<std::int64_t>(max_rows, offsets[k + 1] - offsets[k]);
  Array gathered = Array::empty(Shape{max_rows, cin}, feats.dtype(), dev);
  Array product = Array::empty(Shape{max_rows, cout}, acc_dtype, dev);
  cublasHandle_t h = cublas(dev, stream);
  LATTICE_CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
  const A one = 1, zero = 0;
  for (std::size_t k = 0; k + 1 < offsets.size(); ++k) {
    const std::int64_t rows = offsets[k + 1] - offsets[k];
    if (rows == 0) continue;
    const std::int32_t* ids = ptr<std::int32_t>(kcsr.edge_ids) + offsets[k];
    k_gather_rows<T><<<grid_for(rows * cin, k_threads), k_threads, 0, stream>>>(
        ptr<T>(feats), ptr<std::int32_t>(rel.in_rows()), ids, rows, cin, ptr<T>(gathered));
    LATTICE_CUDA_LAUNCH_CHECK();
    // Row-major (rows x C_in) * (C_in x C_out) as column-major P^T = W^T G^T.
    const T* wk = ptr<T>(weight) + static_cast<std::int64_t>(k) * cin * cout;
    LATTICE_CUBLAS_CHECK(
        cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, cout, static_cast<int>(rows), cin, &one, wk, cuda_type<T>(), cout,
                     gathered.raw(), cuda_type<T>(), cin, &zero, product.raw(), cuda_type<A>(), cout,
                     std::is_same_v<A, double>
                         ? CUBLAS_COMPUTE_64F
                         : (allow_tf32 && std::is_same_v<T, float> ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F),
                     CUBLAS_GEMM_DEFAULT));
    k_scatter_add<A><<<grid_for(rows * cout, k_threads), k_threads, 0, stream>>>(
        ptr<A>(product), ptr<std::int32_t>(rel.out_rows()), ids, rows, cout, ptr<A>(acc));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  if (cap * cout > 0) {
    k_store_acc<T, A><<<grid_for(cap * cout, k_threads), k_threads, 0, stream>>>(ptr<A>(acc), p, ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
}

// ---- implicit GEMM ------------------------------------------------------------------

// Shapes whose tile configuration was chosen by timing (set_conv_autotune).
// The output stride stands in for the row count the host cannot see: layers
// of one network level share it.
struct TuneKey {
  int device;
  DType dtype;
  int cin, cout, volume, rows_log2;
  std::int64_t stride;
  bool sorted, tf32;
  auto operator<=>(const TuneKey&) const = default;
};
std::mutex g_tune_mutex;
std::map<TuneKey, int>& tune_cache() {
  static std::map<TuneKey, int> cache;
  return cache;
}

// Times every tile configuration once on this launch (host-facing: it waits).
int tune(const ConvLaunch& p, bool tf32, int fallback) {
  float best_ms = 1e30f;
  int best = fallback;
  for (int c = 0; c < conv_mma_configs(); ++c) {
    // A sorted map's tile masks serve tiles that are multiples of its tile height.
    if (p.tile_masks != nullptr && conv_mma_tile_rows(c) % p.tile_rows != 0) continue;
    cudaEvent_t a, b;
    LATTICE_CUDA_CHECK(cudaEventCreate(&a));
    LATTICE_CUDA_CHECK(cudaEventCreate(&b));
    launch_conv_mma(p, c, tf32);  // warm-up
    LATTICE_CUDA_CHECK(cudaEventRecord(a, p.stream));
    for (int r = 0; r < 3; ++r) launch_conv_mma(p, c, tf32);
    LATTICE_CUDA_CHECK(cudaEventRecord(b, p.stream));
    LATTICE_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    LATTICE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (ms < best_ms) {
      best_ms = ms;
      best = c;
    }
  }
  return best;
}

TuneKey tune_key(const ConvLaunch& p, bool sorted, bool tf32, int device, std::int64_t stride) {
  return {device, p.dtype,  p.cin,
          p.cout, p.volume, static_cast<int>(std::bit_width(static_cast<std::uint64_t>(p.rows_cap))),
          stride, sorted,   tf32};
}

int choose_config(const ConvLaunch& p, bool sorted, bool tf32, int device, std::int64_t stride) {
  if (lattice::deterministic()) return -1;  // the fixed table, never a timed choice
  const TuneKey key = tune_key(p, sorted, tf32, device, stride);
  {
    std::lock_guard lock(g_tune_mutex);
    auto it = tune_cache().find(key);
    if (it != tune_cache().end()) return it->second;
  }
  return -1;
}

ops::ConvRoute run_implicit(const Relation& rel, ConvLaunch p, bool sorted, bool tf32) {
  const bool mma = conv_mma_supported(p);
  const int device = rel.device().index;
  const std::int64_t stride = rel.output()->stride().product();
  int config = mma ? choose_config(p, sorted, tf32, device, stride) : -1;
  const bool tuning = mma && config < 0 && ops::conv_autotune() && !lattice::deterministic();
  if (mma && config < 0) config = tuning::mma_config(p.cin, p.cout, p.rows_cap);
  if (sorted) {
    // One sorted map per relation: 64-row tile masks, ORed by taller CTAs.
    const SortedImplicitGemmMap& s = rel.sorted_implicit_gemm_map(64);
    p.map = ptr<std::int32_t>(s.sorted_map);
    p.perm = ptr<std::int32_t>(s.perm);
    p.tile_masks = ptr<std::uint32_t>(s.tile_masks);
    p.tile_rows = s.tile_rows;
    p.words = s.mask_words;
  } else {
    const ImplicitGemmMap& m = rel.implicit_gemm_map();
    p.map = ptr<std::int32_t>(m.out_in_map);
    p.masks = ptr<std::uint32_t>(m.masks);
    p.words = m.mask_words;
  }
  if (mma) {
    if (tuning) {
      config = tune(p, tf32, config);
      std::lock_guard lock(g_tune_mutex);
      tune_cache()[tune_key(p, sorted, tf32, device, stride)] = config;
    }
    launch_conv_mma(p, config, tf32);
  } else {
    launch_conv_simt(p);
  }
  return sorted ? ops::ConvRoute::sorted_implicit_gemm : ops::ConvRoute::implicit_gemm;
}

}  // namespace

ops::ConvRoute conv_relation(const Relation& rel, const Array& feats, const Array& weight,
                             const std::optional<Array>& bias, Array& out, const ConvOptions& options) {
  LATTICE_CUDA_CHECK(cudaSetDevice(feats.device().index));
  ConvLaunch p = base_launch(feats, weight, bias, out, *rel.output());
  p.volume = static_cast<int>(rel.volume());
  set_epilogue(p, options);
  ops::ConvRoute route = options.route;
  if (route == ops::ConvRoute::automatic) route = tuning::select_route(p.dtype, p.cin, p.cout, p.volume);
  switch (route) {
    case ops::ConvRoute::gather_gemm_scatter:
      visit_float_device(
          p.dtype, [&]<class T>() { gather_gemm_scatter<T>(rel, feats, weight, bias, out, options.allow_tf32, p); });
      return route;
    case ops::ConvRoute::sorted_implicit_gemm:
      return run_implicit(rel, p, true, options.allow_tf32);
    default:
      return run_implicit(rel, p, false, options.allow_tf32);
  }
}

ops::ConvRoute conv_pointwise(const Array& feats, const Array& rows, const Array& weight,
                              const std::optional<Array>& bias, Array& out, const ConvOptions& options) {
  LATTICE_CUDA_CHECK(cudaSetDevice(feats.device().index));
  ConvLaunch p;
  p.x = feats.raw();
  p.w = weight.raw();
  p.y = out.raw();
  p.bias = bias ? bias->raw() : nullptr;
  p.count = ptr<std::int32_t>(rows);
  p.rows_cap = out.dim(0);
  p.cin = static_cast<int>(feats.dim(1));
  p.cout = static_cast<int>(out.dim(1));
  p.volume = 1;
  p.dtype = feats.dtype();
  p.stream = stream_of(feats.device());
  set_epilogue(p, options);
  if (conv_mma_supported(p)) {
    launch_conv_mma(p, tuning::mma_config(p.cin, p.cout, p.rows_cap), options.allow_tf32);
  } else {
    launch_conv_simt(p);
  }
  return ops::ConvRoute::pointwise_matmul;
}

}  // namespace lattice::cuda
