// The general convolution kernel: SIMT, any dtype, any channel count.
// Output-stationary tiles of 64 rows x 64 output channels; for each kernel
// offset used by a row of the tile, C_in is walked in chunks of 16: the
// gathered input rows and the weight slice go through shared memory, each
// thread accumulates a 4x4 block in float32 (float64 for float64 storage).
#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/conv_epilogue.cuh"

namespace lattice::cuda {

namespace {

constexpr int k_bm = 64, k_bn = 64, k_bk = 16;
constexpr int k_threads = 256;  // 16 x 16, each 4 x 4 outputs

template <class T>
__global__ void __launch_bounds__(k_threads) k_conv_simt(ConvLaunch p) {
  using A = device::compute_t<T>;
  __shared__ A xs[k_bk][k_bm + 1];  // transposed: xs[ci][row]
  __shared__ A ws[k_bk][k_bn];
  __shared__ std::int32_t in_row[k_bm];
  __shared__ int any;

  const std::int64_t count = device::read_count(p.count, p.rows_cap);
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * k_bm;
  if (row0 >= count) return;
  const int col0 = blockIdx.y * k_bn;
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);

  A acc[4][4] = {};
  for (int k = 0; k < p.volume; ++k) {
    if (tid == 0) any = 0;
    __syncthreads();
    if (tid < k_bm) {
      const std::int64_t r = row0 + tid;
      std::int32_t i = -1;
      if (r < count) i = p.map ? p.map[r * p.volume + k] : static_cast<std::int32_t>(r);
      in_row[tid] = i;
      if (i >= 0) any = 1;
    }
    __syncthreads();
    if (!any) continue;  // no row of this tile uses offset k
    const T* wk = w + static_cast<std::int64_t>(k) * p.cin * p.cout;
    for (int c0 = 0; c0 < p.cin; c0 += k_bk) {
      // 64 x 16 inputs and 16 x 64 weights, 4 elements each per thread.
      for (int e = tid; e < k_bm * k_bk; e += k_threads) {
        const int r = e / k_bk, c = e % k_bk;
        const std::int32_t i = in_row[r];
        xs[c][r] = (i >= 0 && c0 + c < p.cin) ? device::load(x[static_cast<std::int64_t>(i) * p.cin + c0 + c]) : A(0);
      }
      for (int e = tid; e < k_bk * k_bn; e += k_threads) {
        const int c = e / k_bn, n = e % k_bn;
        ws[c][n] = (c0 + c < p.cin && col0 + n < p.cout)
                       ? device::load(wk[static_cast<std::int64_t>(c0 + c) * p.cout + col0 + n])
                       : A(0);
      }
      __syncthreads();
#pragma unroll
      for (int c = 0; c < k_bk; ++c) {
        A a[4], b[4];
#pragma unroll
        for (int m = 0; m < 4; ++m) a[m] = xs[c][ty + 16 * m];
#pragma unroll
        for (int n = 0; n < 4; ++n) b[n] = ws[c][tx + 16 * n];
#pragma unroll
        for (int m = 0; m < 4; ++m)
#pragma unroll
          for (int n = 0; n < 4; ++n) acc[m][n] += a[m] * b[n];
      }
      __syncthreads();
    }
  }
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    const std::int64_t j = row0 + ty + 16 * m;
    if (j >= count) continue;
    const std::int64_t o = p.perm ? p.perm[j] : j;
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      const int col = col0 + tx + 16 * n;
      if (col >= p.cout) continue;
      const A b = bias ? device::load(bias[col]) : A(0);
      y[o * p.cout + col] = device::store<T>(device::epilogue<T>(p, acc[m][n] + b, o, col));
    }
  }
}

}  // namespace

void launch_conv_simt(const ConvLaunch& p) {
  if (p.rows_cap == 0 || p.cout == 0) return;
  const dim3 grid(static_cast<unsigned>((p.rows_cap + k_bm - 1) / k_bm),
                  static_cast<unsigned>((p.cout + k_bn - 1) / k_bn));
  visit_float_device(p.dtype, [&]<class T>() {
    k_conv_simt<T><<<grid, k_threads, 0, p.stream>>>(p);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace lattice::cuda
