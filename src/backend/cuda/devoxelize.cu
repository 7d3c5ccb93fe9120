// CUDA devoxelize (SPEC §8, Appendix A "Points and voxels") and the first point
// of each voxel for voxelize_with_quantization. Same rules as
// backend/cpu/points_cpu.cpp: u = (p - origin) / (s * voxel_size) with
// explicitly rounded IEEE subtract and divide in the points' precision (so
// nearest finds voxelize's own cell); linear takes u - 0.5 and its floor in
// double (exact), weights in float32 (float64 for float64 points), and sums
// the 8 corners in a fixed order (z fastest) with explicitly rounded
// multiply-add (no FMA), as the CPU does. One thread per point; no atomics on
// floats; no host synchronisation.
//
// Bad device values: a non-finite point, a point_voxel_map entry outside
// [-1, rows) or a batch index outside [0, 1022] gives that point 0 and is
// reported through the sticky error slot (lowest offending row; non-finite
// points, then map entries, then batch indices, as the CPU front end checks).
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>

#include "backend/cuda/api_points.hpp"
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
constexpr std::int32_t k_no_row = std::numeric_limits<std::int32_t>::max();
constexpr double k_cell_limit = 1 << 20;  // beyond every key range: absent

using device::add_rn;
using device::div_rn;
using device::mul_rn;
using device::sub_rn;

template <class P>
struct AxisParams {
  P origin[3];
  P denom[3];  // stride * voxel_size, rounded once in P on the host (as the CPU)
};

template <class P>
AxisParams<P> axis_params(const ops::DevoxelizeParams& params, Int3 stride) {
  AxisParams<P> ap{};
  for (int a = 0; a < 3; ++a) {
    ap.origin[a] = static_cast<P>(params.origin[a]);
    ap.denom[a] = static_cast<P>(stride[a]) * static_cast<P>(params.voxel_size[a]);
  }
  return ap;
}

struct Inputs {
  const std::int32_t* map;    // nearest shortcut, or null
  const std::int32_t* batch;  // or null (all 0)
  const std::int32_t* active_rows;
  std::int64_t capacity;
  std::int32_t* bad;  // lowest [0] non-finite point, [1] bad batch row, [2] bad map entry
};

__global__ void init_bad_kernel(std::int32_t* bad) {
  if (threadIdx.x < 3) bad[threadIdx.x] = k_no_row;
}

template <class T, class P>
__global__ void devoxelize_kernel(const T* __restrict__ feats, std::int64_t c, const P* __restrict__ pts,
                                  std::int64_t n, AxisParams<P> ap, ConstHashView table, Inputs in, bool linear,
                                  T* __restrict__ out) {
  using A = compute_t<T>;
  using W = std::conditional_t<std::is_same_v<P, double>, double, float>;
  const std::int64_t m = read_count(in.active_rows, in.capacity);
  LATTICE_GRID_LOOP(i, n) {
    T* dst = out + i * c;
    const std::int32_t b = in.batch != nullptr ? in.batch[i] : 0;
    P p[3];
    bool finite = true;
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      p[a] = pts[3 * i + a];
      finite = finite && isfinite(p[a]);
    }
    const bool batch_ok = b >= 0 && b <= lattice::detail::k_batch_max;
    if (!finite) atomicMin(&in.bad[0], static_cast<std::int32_t>(i));
    if (!batch_ok) atomicMin(&in.bad[1], static_cast<std::int32_t>(i));
    if (!finite || !batch_ok) {
      for (std::int64_t j = 0; j < c; ++j) dst[j] = store<T>(0.0f);
      continue;
    }
    if (!linear) {
      std::int32_t row = -1;
      if (in.map != nullptr) {
        row = in.map[i];
        if (row < -1 || row >= m) {
          atomicMin(&in.bad[2], static_cast<std::int32_t>(i));
          row = -1;
        }
      } else {
        long long cell[3];
        bool inside = true;
#pragma unroll
        for (int a = 0; a < 3; ++a) {
          const P f = floor(div_rn(sub_rn(p[a], ap.origin[a]), ap.denom[a]));
          inside = inside && fabs(static_cast<double>(f)) < k_cell_limit;
          cell[a] = inside ? static_cast<long long>(f) : 0;
        }
        if (inside) row = device::lookup(table, b, cell[0], cell[1], cell[2]);
      }
      for (std::int64_t j = 0; j < c; ++j)
        dst[j] = row >= 0 ? feats[static_cast<std::int64_t>(row) * c + j] : store<T>(0.0f);
      continue;
    }
    long long lo[3];
    W w_lo[3], w_hi[3];
    bool inside = true;
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      const double t = __dsub_rn(static_cast<double>(div_rn(sub_rn(p[a], ap.origin[a]), ap.denom[a])), 0.5);
      const double f = floor(t);
      inside = inside && fabs(f) < k_cell_limit;
      lo[a] = inside ? static_cast<long long>(f) : 0;
      w_lo[a] = static_cast<W>(__dsub_rn(__dadd_rn(f, 1.0), t));
      w_hi[a] = static_cast<W>(__dsub_rn(t, f));
    }
    std::int32_t rows[8];
    W weights[8];
    W total = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int d0 = (k >> 2) & 1, d1 = (k >> 1) & 1, d2 = k & 1;
      rows[k] = inside ? device::lookup(table, b, lo[0] + d0, lo[1] + d1, lo[2] + d2) : -1;
      W w = 1;
      w = mul_rn(w, d0 ? w_hi[0] : w_lo[0]);
      w = mul_rn(w, d1 ? w_hi[1] : w_lo[1]);
      w = mul_rn(w, d2 ? w_hi[2] : w_lo[2]);
      weights[k] = rows[k] >= 0 ? w : W(0);
      total = add_rn(total, weights[k]);
    }
    for (std::int64_t j = 0; j < c; ++j) {
      A acc = 0;
      if (total > W(0)) {
        for (int k = 0; k < 8; ++k) {
          if (rows[k] >= 0) {
            acc = add_rn(acc,
                         mul_rn(static_cast<A>(weights[k]), load(feats[static_cast<std::int64_t>(rows[k]) * c + j])));
          }
        }
        acc = div_rn(acc, static_cast<A>(total));
      }
      dst[j] = store<T>(acc);
    }
  }
}

// One thread: records the lowest offending row, non-finite points first (the
// CPU front end's order of checks).
__global__ void report_kernel(const std::int32_t* __restrict__ batch, const std::int32_t* __restrict__ map,
                              const std::int32_t* __restrict__ active_rows, std::int64_t capacity,
                              const std::int32_t* __restrict__ bad, ErrorSlot* slot, int op) {
  if (bad[0] != k_no_row) {
    device::record_error(slot, ErrorCode::non_finite_point, op, bad[0]);
  } else if (bad[2] != k_no_row) {
    device::record_error(slot, ErrorCode::voxel_map_out_of_range, op, bad[2], map[bad[2]],
                         read_count(active_rows, capacity));
  } else if (bad[1] != k_no_row) {
    device::record_error(slot, ErrorCode::batch_out_of_range, op, bad[1], batch[bad[1]]);
  }
}

__global__ void first_init_kernel(std::int32_t* __restrict__ first, std::int64_t n) {
  LATTICE_GRID_LOOP(r, n) { first[r] = k_no_row; }
}

__global__ void first_min_kernel(const std::int32_t* __restrict__ inverse, std::int64_t n,
                                 std::int32_t* __restrict__ first) {
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t row = inverse[i];
    if (row >= 0 && row < n) atomicMin(&first[row], static_cast<std::int32_t>(i));  // integer: deterministic
  }
}

__global__ void first_finish_kernel(std::int32_t* __restrict__ first, const std::int32_t* __restrict__ active_rows,
                                    std::int64_t n) {
  const std::int64_t m = read_count(active_rows, n);
  LATTICE_GRID_LOOP(r, n) {
    if (r >= m || first[r] == k_no_row) first[r] = -1;
  }
}

template <class T, class P>
void launch(const CoordinateSet& set, const Array& feats, const Array& points, const Inputs& in, bool linear,
            const ops::DevoxelizeParams& params, const ConstHashView& table, Array& out, cudaStream_t stream) {
  const std::int64_t n = points.dim(0);
  devoxelize_kernel<T, P><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
      ptr<const T>(feats), feats.dim(1), ptr<const P>(points), n, axis_params<P>(params, set.stride()), table, in,
      linear, ptr<T>(out));
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void devoxelize(const CoordinateSet& set, const Array& feats, const Array& points, const std::optional<Array>& map,
                const std::optional<Array>& batch_indices, const ops::DevoxelizeParams& params, Array& out) {
  const Device dev = points.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const bool linear = params.interpolation == ops::Interpolation::linear;
  ConstHashView table{nullptr, nullptr, 0};
  if (linear || !map) {
    const CudaCoordIndex& index = coord_index(set, "devoxelize");
    table = {reinterpret_cast<const unsigned long long*>(index.keys.raw()), ptr<const std::int32_t>(index.values),
             index.mask()};
  }
  Array bad = Array::empty(Shape{3}, DType::i32, dev);
  init_bad_kernel<<<1, 32, 0, stream>>>(ptr<std::int32_t>(bad));
  LATTICE_CUDA_LAUNCH_CHECK();
  const std::int32_t* batch = batch_indices ? ptr<const std::int32_t>(*batch_indices) : nullptr;
  const Inputs in{map ? ptr<const std::int32_t>(*map) : nullptr, batch, ptr<const std::int32_t>(set.active_rows()),
                  set.capacity(), ptr<std::int32_t>(bad)};
  visit_float_device(feats.dtype(), [&]<class T>() {
    if (points.dtype() == DType::f32) {
      launch<T, float>(set, feats, points, in, linear, params, table, out, stream);
    } else {
      launch<T, double>(set, feats, points, in, linear, params, table, out, stream);
    }
  });
  report_kernel<<<1, 1, 0, stream>>>(batch, in.map, in.active_rows, in.capacity, ptr<const std::int32_t>(bad),
                                     error_slot(dev.index), op_id("devoxelize"));
  LATTICE_CUDA_LAUNCH_CHECK();
}

Array first_points(const Array& inverse_rows, const Array& active_rows) {
  const Device dev = inverse_rows.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t n = inverse_rows.dim(0);
  Array first = Array::empty(Shape{n}, DType::i32, dev);
  if (n == 0) return first;
  const unsigned grid = grid_for(n, k_threads);
  first_init_kernel<<<grid, k_threads, 0, stream>>>(ptr<std::int32_t>(first), n);
  LATTICE_CUDA_LAUNCH_CHECK();
  first_min_kernel<<<grid, k_threads, 0, stream>>>(ptr<const std::int32_t>(inverse_rows), n, ptr<std::int32_t>(first));
  LATTICE_CUDA_LAUNCH_CHECK();
  first_finish_kernel<<<grid, k_threads, 0, stream>>>(ptr<std::int32_t>(first), ptr<const std::int32_t>(active_rows),
                                                      n);
  LATTICE_CUDA_LAUNCH_CHECK();
  return first;
}

}  // namespace lattice::cuda
