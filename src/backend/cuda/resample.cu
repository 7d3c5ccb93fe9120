// CUDA kernels of the resample family: weight squaring and the combine step
// of the normalized convolutions, and trilinear upsampling (children support
// and interpolation). Same arithmetic as backend/cpu/resample_cpu.cpp, with
// explicitly rounded operations (__fmul_rn, ...) so that nvcc cannot contract
// them into FMAs: results match the CPU's -ffp-contract=off evaluation.
//
// Device counts (active rows) are read by the kernels; grids are sized by
// host-known capacities; nothing waits for the host. Rows past a count are
// capacity and are not written. No atomics besides the sticky error slot.
#include <cstdint>

#include "backend/cuda/api.hpp"
#include "backend/cuda/coord_index.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/hash.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/errors.hpp"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::ConstHashView;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;

using device::add_rn;
using device::div_rn;
using device::mul_rn;
using device::sqrt_rn;

cudaStream_t prepare(Device device) {
  LATTICE_CUDA_CHECK(cudaSetDevice(device.index));
  return stream_of(device);
}

// ---- normalized convolutions -------------------------------------------------------

template <class T, class A>
__global__ void square_kernel(const T* __restrict__ w, A* __restrict__ out, std::int64_t n) {
  LATTICE_GRID_LOOP(i, n) {
    const A v = static_cast<A>(load(w[i]));
    out[i] = mul_rn(v, v);
  }
}

// y = num / sqrt(den + eps) + bias over the active rows.
template <class T>
__global__ void combine_kernel(const T* __restrict__ num, const compute_t<T>* __restrict__ den,
                               const T* __restrict__ bias, T* __restrict__ y, const std::int32_t* rows_ptr,
                               std::int64_t capacity, std::int64_t c, compute_t<T> eps) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(rows_ptr, capacity) * c;
  LATTICE_GRID_LOOP(i, n) {
    A v = div_rn(load(num[i]), sqrt_rn(add_rn(den[i], eps)));
    if (bias != nullptr) v = add_rn(v, load(bias[i % c]));
    y[i] = store<T>(v);
  }
}

// ---- trilinear upsampling ------------------------------------------------------------

struct Ratio {
  int r[3];
  int coarse_stride[3];
  int fine_stride[3];
};

// Children u*r + d of every active coarse row (rows outer, z fastest).
__global__ void children_kernel(const std::int32_t* __restrict__ coarse, const std::int32_t* rows_ptr,
                                std::int64_t capacity, Ratio g, std::int32_t* __restrict__ out, ErrorSlot* err,
                                int op) {
  const std::int64_t per = std::int64_t{g.r[0]} * g.r[1] * g.r[2];
  const std::int64_t n = read_count(rows_ptr, capacity) * per;
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t row = i / per;
    const int k = static_cast<int>(i - row * per);
    const int d[3] = {k / (g.r[1] * g.r[2]), (k / g.r[2]) % g.r[1], k % g.r[2]};
    const std::int32_t* u = coarse + 4 * row;
    std::int64_t f[3];
    for (int a = 0; a < 3; ++a) f[a] = std::int64_t{u[a + 1] / g.coarse_stride[a]} * g.r[a] + d[a];
    if (!detail::key_fits(u[0], f[0], f[1], f[2])) {
      device::record_error(err, ErrorCode::key_overflow, op, row, f[0], f[1], f[2]);
    }
    std::int32_t* o = out + 4 * i;
    o[0] = u[0];
    for (int a = 0; a < 3; ++a) o[a + 1] = static_cast<std::int32_t>(f[a] * g.fine_stride[a]);
  }
}

__global__ void scale_count_kernel(const std::int32_t* rows_ptr, std::int64_t capacity, std::int32_t per,
                                   std::int32_t* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *out = static_cast<std::int32_t>(read_count(rows_ptr, capacity) * per);
}

// Coarse candidates on one axis, as on the CPU: floor(f / r), and its
// successor when r does not divide f; weights (r - d) / r and d / r.
template <class A>
__device__ __forceinline__ int axis_candidates(long long f, int r, long long u[2], A w[2]) {
  const long long lo = detail::floor_div(static_cast<std::int32_t>(f), r);
  const long long d = f - lo * r;
  u[0] = lo;
  w[0] = div_rn(static_cast<A>(r - d), static_cast<A>(r));
  if (d == 0) return 1;
  u[1] = lo + 1;
  w[1] = div_rn(static_cast<A>(d), static_cast<A>(r));
  return 2;
}

// One thread per active fine row: gathers its (at most 8) coarse neighbours
// and weights in the CPU's order, then sums every channel in that order.
template <class T>
__global__ void upsample_kernel(const std::int32_t* __restrict__ fine, const std::int32_t* fine_rows,
                                std::int64_t fine_capacity, Ratio g, ConstHashView table, const T* __restrict__ x,
                                std::int64_t c, T* __restrict__ y) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(fine_rows, fine_capacity);
  LATTICE_GRID_LOOP(o, n) {
    const std::int32_t* f = fine + 4 * o;
    long long ux[2], uy[2], uz[2];
    A wx[2], wy[2], wz[2];
    const int nx = axis_candidates<A>(f[1] / g.fine_stride[0], g.r[0], ux, wx);
    const int ny = axis_candidates<A>(f[2] / g.fine_stride[1], g.r[1], uy, wy);
    const int nz = axis_candidates<A>(f[3] / g.fine_stride[2], g.r[2], uz, wz);
    std::int32_t rows[8];
    A weights[8];
    int m = 0;
    A total = A{0};
    for (int a = 0; a < nx; ++a) {
      for (int b = 0; b < ny; ++b) {
        for (int d = 0; d < nz; ++d) {
          const std::int32_t i = device::lookup(table, f[0], ux[a], uy[b], uz[d]);
          if (i < 0) continue;
          const A w = mul_rn(mul_rn(wx[a], wy[b]), wz[d]);
          total = add_rn(total, w);
          rows[m] = i;
          weights[m] = w;
          ++m;
        }
      }
    }
    T* yo = y + o * c;
    for (std::int64_t j = 0; j < c; ++j) {
      A acc = A{0};
      for (int q = 0; q < m; ++q) acc = add_rn(acc, mul_rn(weights[q], load(x[std::int64_t{rows[q]} * c + j])));
      yo[j] = store<T>(total > A{0} ? div_rn(acc, total) : A{0});
    }
  }
}

Ratio ratio_of(Int3 r, Int3 coarse_stride, Int3 fine_stride) {
  return {{r.x, r.y, r.z},
          {coarse_stride.x, coarse_stride.y, coarse_stride.z},
          {fine_stride.x, fine_stride.y, fine_stride.z}};
}

}  // namespace

void square_weight(const Array& w, Array& out) {
  const cudaStream_t stream = prepare(w.device());
  const std::int64_t n = w.numel();
  if (n == 0) return;
  visit_float_device(w.dtype(), [&]<class T>() {
    if (out.dtype() == DType::f64) {
      square_kernel<T, double><<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const T>(w), ptr<double>(out), n);
    } else {
      square_kernel<T, float><<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const T>(w), ptr<float>(out), n);
    }
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void normalized_combine(const Array& num, const Array& den, const std::optional<Array>& bias, double eps,
                        const Array& rows, Array& out) {
  const cudaStream_t stream = prepare(num.device());
  const std::int64_t capacity = num.dim(0), c = num.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(num.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    combine_kernel<T><<<grid_for(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(num), ptr<const A>(den), bias ? ptr<const T>(*bias) : nullptr, ptr<T>(out),
        ptr<const std::int32_t>(rows), capacity, c, static_cast<A>(eps));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

ChildrenSupport upsample_children(const CoordinateSet& coarse, Int3 ratio, Int3 fine_stride, const char* op) {
  const Device dev = coarse.device();
  const cudaStream_t stream = prepare(dev);
  const std::int64_t per = ratio.product();
  const std::int64_t capacity = coarse.capacity();
  ChildrenSupport out{Array::empty(Shape{capacity * per, 4}, DType::i32, dev), Array::empty(Shape{}, DType::i32, dev)};
  const auto* rows = ptr<const std::int32_t>(coarse.active_rows());
  if (capacity > 0) {
    children_kernel<<<grid_for(capacity * per, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(coarse.coords()), rows, capacity, ratio_of(ratio, coarse.stride(), fine_stride),
        ptr<std::int32_t>(out.coords), error_slot(dev.index), op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  scale_count_kernel<<<1, 1, 0, stream>>>(rows, capacity, static_cast<std::int32_t>(per),
                                          ptr<std::int32_t>(out.active_rows));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

void trilinear_upsample(const CoordinateSet& coarse, const Array& feats, const CoordinateSet& fine, Int3 ratio,
                        Array& out, const char* op) {
  const CudaCoordIndex& index = coord_index(coarse, op);  // enqueues the build on first use
  const cudaStream_t stream = prepare(feats.device());
  const std::int64_t fine_capacity = fine.capacity();
  if (fine_capacity == 0) return;
  const ConstHashView table{reinterpret_cast<const unsigned long long*>(index.keys.raw()),
                            ptr<const std::int32_t>(index.values), index.mask()};
  visit_float_device(feats.dtype(), [&]<class T>() {
    upsample_kernel<T><<<grid_for(fine_capacity, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(fine.coords()), ptr<const std::int32_t>(fine.active_rows()), fine_capacity,
        ratio_of(ratio, coarse.stride(), fine.stride()), table, ptr<const T>(feats), feats.dim(1), ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace lattice::cuda
