// Shared pieces of the GPU benchmarks: see gpu_harness.hpp.
#include "gpu_harness.hpp"

#include <algorithm>

#include <cublas_v2.h>

namespace lattice::bench {

// Times `f` with CUDA events on the current stream: `warmup` untimed runs, then `runs` timed ones.
Timing time_it(const std::function<void()>& f, int runs, int warmup) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < runs; ++i) {
    CHECK_CUDA(cudaEventRecord(a, stream()));
    f();
    CHECK_CUDA(cudaEventRecord(b, stream()));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  synchronize(k_dev);  // raises any device-side error
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

Ceilings measure_ceilings(bool quick) {
  Ceilings c;
  const std::int64_t bytes = std::int64_t{1} << 30;
  Array src = Array::full(Shape{bytes / 4}, DType::f32, 1.0, k_dev),
        dst = Array::empty(Shape{bytes / 4}, DType::f32, k_dev);
  const Timing t = time_it(
      [&] { CHECK_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), bytes, cudaMemcpyDeviceToDevice, stream())); }, 10);
  c.copy_bytes_per_s = 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e-3);  // read + write
  cublasHandle_t h;
  cublasCreate(&h);
  cublasSetStream(h, stream());
  const int n = quick ? 4096 : 8192;
  const double flops = 2.0 * n * static_cast<double>(n) * n;
  auto gemm_rate = [&](cudaDataType_t type, cublasComputeType_t compute, DType dtype) {
    Array a = Array::full(Shape{n, n}, dtype, 0.5, k_dev), b = Array::full(Shape{n, n}, dtype, 0.25, k_dev);
    Array out = Array::empty(Shape{n, n}, dtype, k_dev);
    const float one = 1, zero = 0;
    const Timing g = time_it(
        [&] {
          cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.raw(), type, n, b.raw(), type, n, &zero, out.raw(),
                       type, n, compute, CUBLAS_GEMM_DEFAULT);
        },
        quick ? 5 : 10, 2);
    return flops / (g.median_ms * 1e-3);
  };
  c.gemm_f16 = gemm_rate(CUDA_R_16F, CUBLAS_COMPUTE_32F, DType::f16);
  cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH);
  c.gemm_f32 = gemm_rate(CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, DType::f32);
  c.gemm_tf32 = gemm_rate(CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, DType::f32);
  cublasDestroy(h);
  return c;
}

Row make_row(const std::string& name, DType dtype, bool tf32, double flops, double bytes, const Timing& t,
             const Ceilings& c) {
  Row r;
  r.name = name;
  r.dtype = std::string(dtype_name(dtype)) + (tf32 ? "+tf32" : "");
  r.flops = flops;
  r.bytes = bytes;
  r.median_ms = t.median_ms;
  r.min_ms = t.min_ms;
  const double rate = flops / (t.median_ms * 1e-3);
  r.compute_ratio = flops > 0 ? rate / c.gemm(dtype, tf32) : 0;
  const double floor_s = std::max(flops / c.gemm(dtype, tf32), bytes / c.copy_bytes_per_s);
  r.floor_ratio = floor_s / (t.median_ms * 1e-3);
  return r;
}

SparseTensor fresh(const Array& coords, const Array& feats, std::int64_t rows) {
  auto m = CoordinateManager::create();
  auto set = m->insert(coords, Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), k_dev), Int3{1},
                       std::nullopt, rows);
  return SparseTensor(set, m, feats);
}

std::int64_t peak_pool_bytes() {
  cudaMemPool_t pool;
  CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, 0));
  std::uint64_t v = 0;
  CHECK_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &v));
  return static_cast<std::int64_t>(v);
}

void reset_peak() {
  cudaMemPool_t pool;
  CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, 0));
  std::uint64_t zero = 0;
  CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

// MinkUNet FLOPs and minimum bytes from one traced pass.

}  // namespace lattice::bench
