// CUDA voxelization (SPEC §8, Appendix A "Points and voxels"): the same
// voxels, row order, point->voxel map and counts as backend/cpu/voxelize_cpu.cpp,
// and bitwise the same features (same additions in the same order, same
// rounding), with no host synchronisation.
//
// Pipeline, all on the current stream, sized by the point count N (host-known):
//  1. cells: c = floor((p - origin) / (stride * voxel_size)) per axis in the
//     points' precision with explicitly rounded IEEE subtract and divide (no
//     FMA, no reciprocal). Bad points (non-finite, cell outside the key range,
//     batch outside [0, 1022]) are skipped; the lowest bad row per kind is
//     kept with an integer atomicMin and one thread records it in the sticky
//     error slot afterwards (batch errors first, as the CPU front end checks
//     them first), so the reported point is the CPU's.
//     Good points insert their packed key into a hash table (linear probing,
//     power-of-two capacity >= 2N); the slot's value is atomicMin(point index),
//     i.e. the first point of that voxel.
//  2. flags[i] = (i is the first point of its voxel); an exclusive scan (CUB,
//     backend/cuda/scan.hpp) gives each first point its voxel row, so rows are
//     numbered in first-seen order; the flag total, written on the device, is
//     the voxel count (active_rows).
//  3. inverse_rows[i] = row of its voxel (-1 for skipped points); counts by
//     integer atomicAdd; the first point writes the coordinate row.
//  4. features: a stable radix sort of (row, point index) makes each voxel's
//     points contiguous in point order; an exclusive scan of counts gives the
//     segment starts; one thread per (voxel, channel) reduces its segment in
//     point order in the compute type, exactly as the CPU's serial loop does.
// Integer atomics only; every float result has a fixed evaluation order.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/errors.hpp"
#include "backend/cuda/scan.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;
constexpr std::int32_t k_no_row = std::numeric_limits<std::int32_t>::max();

using device::div_rn;
using device::mul_rn;
using device::sub_rn;
__device__ __forceinline__ float floor_p(float v) { return floorf(v); }
__device__ __forceinline__ double floor_p(double v) { return floor(v); }

// Origin and divisor per axis, rounded on the host in the points' precision
// exactly as the CPU does (one multiply of the two converted values).
template <class P>
struct CellParams {
  P origin[3];
  P denom[3];
  std::int32_t stride[3];
};

template <class P>
CellParams<P> cell_params(const ops::VoxelizeParams& params) {
  CellParams<P> cp{};
  for (int a = 0; a < 3; ++a) {
    cp.origin[a] = static_cast<P>(params.origin[a]);
    const P s = static_cast<P>(params.stride[a]);
    const P v = static_cast<P>(params.voxel_size[a]);
    cp.denom[a] = s * v;
    cp.stride[a] = params.stride[a];
  }
  return cp;
}

// floor((p - origin) / denom) for one axis; false when p is non-finite or the
// cell is outside the key range.
template <class P>
__device__ __forceinline__ bool axis_cell(P p, P origin, P denom, P& cell) {
  cell = floor_p(div_rn(sub_rn(p, origin), denom));
  return isfinite(p) && cell >= static_cast<P>(lattice::detail::k_axis_min) &&
         cell <= static_cast<P>(lattice::detail::k_axis_max);
}

// The voxel table: packed keys (k_empty_key when free) and, per key, the
// lowest point index that maps to it.
struct VoxelTable {
  unsigned long long* keys;
  std::int32_t* first_point;
  unsigned long long mask;  // slots - 1, slots a power of two >= 2N
};

// Claims (or finds) the slot of `key`. A key, once written, never changes, so
// a plain read that already shows it saves the atomic.
__device__ __forceinline__ unsigned long long claim_slot(const VoxelTable& t, unsigned long long key) {
  unsigned long long slot = lattice::detail::hash_key(key) & t.mask;
  while (true) {
    const unsigned long long seen = t.keys[slot];
    if (seen == key) return slot;
    if (seen == lattice::detail::k_empty_key) {
      const unsigned long long prev = atomicCAS(&t.keys[slot], lattice::detail::k_empty_key, key);
      if (prev == lattice::detail::k_empty_key || prev == key) return slot;
    }
    slot = (slot + 1) & t.mask;
  }
}

// Lowest offending rows: [0] batch out of range, [1] bad point.
struct BadRows {
  std::int32_t* rows;
};

__global__ void init_table_kernel(VoxelTable table, std::int64_t slots, BadRows bad) {
  LATTICE_GRID_LOOP(s, slots) {
    table.keys[s] = lattice::detail::k_empty_key;
    table.first_point[s] = k_no_row;
  }
  if (blockIdx.x == 0 && threadIdx.x < 2) bad.rows[threadIdx.x] = k_no_row;
}

// cells[i] = (batch, cx, cy, cz) logical, or batch -1 for a skipped point;
// slot_of[i] = hash slot of its key.
template <class P>
__global__ void insert_kernel(const P* __restrict__ pts, const std::int32_t* __restrict__ batch, std::int64_t n,
                              CellParams<P> cp, VoxelTable table, int4* __restrict__ cells,
                              std::uint32_t* __restrict__ slot_of, BadRows bad) {
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t b = batch != nullptr ? batch[i] : 0;
    bool ok = true;
    if (b < 0 || b > lattice::detail::k_batch_max) {
      atomicMin(&bad.rows[0], static_cast<std::int32_t>(i));
      ok = false;
    }
    std::int32_t c[3];
    bool point_ok = true;
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      P f;
      point_ok = axis_cell(pts[3 * i + a], cp.origin[a], cp.denom[a], f) && point_ok;
      c[a] = point_ok ? static_cast<std::int32_t>(f) : 0;
    }
    if (!point_ok) {
      atomicMin(&bad.rows[1], static_cast<std::int32_t>(i));
      ok = false;
    }
    if (!ok) {
      cells[i] = make_int4(-1, 0, 0, 0);
      slot_of[i] = 0;
      continue;
    }
    const unsigned long long key = lattice::detail::pack_key(b, c[0], c[1], c[2]);
    const unsigned long long slot = claim_slot(table, key);
    // First point wins. Values only decrease, so a read at or below i is final.
    if (table.first_point[slot] > i) atomicMin(&table.first_point[slot], static_cast<std::int32_t>(i));
    cells[i] = make_int4(b, c[0], c[1], c[2]);
    slot_of[i] = static_cast<std::uint32_t>(slot);
  }
}

// One thread: records the lowest offending row in the sticky error slot,
// with the CPU's precedence (batch indices, then per axis non-finite before range).
template <class P>
__global__ void report_kernel(const P* __restrict__ pts, const std::int32_t* __restrict__ batch, CellParams<P> cp,
                              BadRows bad, ErrorSlot* slot, int op) {
  const std::int32_t bad_batch = bad.rows[0];
  if (bad_batch != k_no_row) {
    device::record_error(slot, ErrorCode::batch_out_of_range, op, bad_batch, batch[bad_batch]);
    return;
  }
  const std::int32_t row = bad.rows[1];
  if (row == k_no_row) return;
  for (int a = 0; a < 3; ++a) {
    const P p = pts[3 * static_cast<std::int64_t>(row) + a];
    P f;
    if (axis_cell(p, cp.origin[a], cp.denom[a], f)) continue;
    if (!isfinite(p)) {
      device::record_error(slot, ErrorCode::non_finite_point, op, row, a);
    } else {
      // f may be huge or infinite: clamp before converting.
      const P lim = static_cast<P>(1e18);
      const long long cell =
          f > lim ? 1000000000000000000LL : (f < -lim ? -1000000000000000000LL : static_cast<long long>(f));
      device::record_error(slot, ErrorCode::voxel_out_of_range, op, row, a, cell);
    }
    return;
  }
}

__global__ void first_flags_kernel(const int4* __restrict__ cells, const std::uint32_t* __restrict__ slot_of,
                                   const std::int32_t* __restrict__ first_point, std::int64_t n,
                                   std::int32_t* __restrict__ flags) {
  LATTICE_GRID_LOOP(i, n) { flags[i] = cells[i].x >= 0 && first_point[slot_of[i]] == i ? 1 : 0; }
}

// Rows, counts, coordinates, and the (row, point) pairs for the feature sort.
// Skipped points get row -1 and sort key n (after every voxel).
__global__ void assign_kernel(const int4* __restrict__ cells, const std::uint32_t* __restrict__ slot_of,
                              const std::int32_t* __restrict__ first_point, const std::int32_t* __restrict__ first_row,
                              std::int64_t n, int3 stride, std::int32_t* __restrict__ inverse,
                              std::int32_t* __restrict__ counts, int4* __restrict__ coords,
                              std::uint32_t* __restrict__ sort_keys, std::int32_t* __restrict__ sort_values) {
  LATTICE_GRID_LOOP(i, n) {
    const int4 c = cells[i];
    std::int32_t row = -1;
    if (c.x >= 0) {
      const std::int32_t first = first_point[slot_of[i]];
      row = first_row[first];
      atomicAdd(&counts[row], 1);
      // Same int32 products as the CPU.
      if (first == i) coords[row] = make_int4(c.x, c.y * stride.x, c.z * stride.y, c.w * stride.z);
    }
    inverse[i] = row;
    if (sort_keys != nullptr) {
      sort_keys[i] = row >= 0 ? static_cast<std::uint32_t>(row) : static_cast<std::uint32_t>(n);
      sort_values[i] = static_cast<std::int32_t>(i);
    }
  }
}

// One thread per (voxel row, channel): reduces the voxel's points in point
// order in the compute type, as the CPU's serial loop; rows past the voxel
// count are zero.
template <class T, ops::Reduction R>
__global__ void reduce_kernel(const T* __restrict__ feats, const std::int32_t* __restrict__ point_of,
                              const std::int32_t* __restrict__ seg_begin, const std::int32_t* __restrict__ counts,
                              const std::int32_t* __restrict__ active_rows, std::int64_t n, std::int64_t c,
                              T* __restrict__ out) {
  using A = compute_t<T>;
  const std::int64_t m = read_count(active_rows, n);
  LATTICE_GRID_LOOP(e, n * c) {
    const std::int64_t v = e / c;
    const std::int64_t j = e - v * c;
    if (v >= m) {
      out[e] = store<T>(0.0f);
      continue;
    }
    const std::int32_t begin = seg_begin[v];
    const std::int32_t count = counts[v];
    A acc = R == ops::Reduction::max ? -std::numeric_limits<A>::infinity() : A{0};
    for (std::int32_t k = begin; k < begin + count; ++k) {
      const A x = load(feats[static_cast<std::int64_t>(point_of[k]) * c + j]);
      if constexpr (R == ops::Reduction::max) {
        acc = acc < x ? x : acc;  // std::max(acc, x)
      } else {
        acc = acc + x;
      }
    }
    // The CPU's value * (1 / count), both correctly rounded.
    if constexpr (R == ops::Reduction::mean) acc = mul_rn(acc, div_rn(A{1}, static_cast<A>(count)));
    out[e] = store<T>(acc);
  }
}

template <class T, ops::Reduction R>
void launch_reduce(const Array& feats, const Array& point_of, const Array& seg_begin, const Array& counts,
                   const Array& active_rows, Array& out, cudaStream_t stream) {
  const std::int64_t n = feats.dim(0);
  const std::int64_t c = feats.dim(1);
  reduce_kernel<T, R><<<grid_for(n * c, k_threads), k_threads, 0, stream>>>(
      ptr<const T>(feats), ptr<const std::int32_t>(point_of), ptr<const std::int32_t>(seg_begin),
      ptr<const std::int32_t>(counts), ptr<const std::int32_t>(active_rows), n, c, ptr<T>(out));
  LATTICE_CUDA_LAUNCH_CHECK();
}

std::int64_t table_slots(std::int64_t n) {
  std::int64_t slots = 16;
  while (slots < 2 * n) slots *= 2;
  return slots;
}

template <class P>
void cells_and_table(const Array& points, const std::optional<Array>& batch_indices, const ops::VoxelizeParams& params,
                     VoxelTable table, std::int64_t slots, Array& cells, Array& slot_of, Array& bad,
                     cudaStream_t stream, const char* op) {
  const std::int64_t n = points.dim(0);
  const CellParams<P> cp = cell_params<P>(params);
  const std::int32_t* batch = batch_indices ? ptr<const std::int32_t>(*batch_indices) : nullptr;
  const BadRows bad_rows{ptr<std::int32_t>(bad)};
  init_table_kernel<<<grid_for(slots, k_threads), k_threads, 0, stream>>>(table, slots, bad_rows);
  LATTICE_CUDA_LAUNCH_CHECK();
  insert_kernel<P><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
      ptr<const P>(points), batch, n, cp, table, ptr<int4>(cells), ptr<std::uint32_t>(slot_of), bad_rows);
  LATTICE_CUDA_LAUNCH_CHECK();
  const int device = points.device().index;
  report_kernel<P><<<1, 1, 0, stream>>>(ptr<const P>(points), batch, cp, bad_rows, error_slot(device), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace

VoxelizeResult voxelize(const Array& points, const std::optional<Array>& feats,
                        const std::optional<Array>& batch_indices, const ops::VoxelizeParams& params, const char* op) {
  const Device dev = points.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t n = points.dim(0);
  const std::int64_t c = feats ? feats->dim(1) : 0;
  const DType feat_dtype = feats ? feats->dtype() : DType::f32;

  VoxelizeResult r;
  r.coords = Array::empty(Shape{n, 4}, DType::i32, dev);
  r.active_rows = Array::empty(Shape{}, DType::i32, dev);
  r.feats = Array::empty(Shape{n, c}, feat_dtype, dev);
  r.inverse_rows = Array::empty(Shape{n}, DType::i32, dev);
  r.counts = Array::empty(Shape{n}, DType::i32, dev);
  if (n == 0) {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(r.active_rows.raw(), 0, sizeof(std::int32_t), stream));
    return r;
  }
  LATTICE_CUDA_CHECK(cudaMemsetAsync(r.coords.raw(), 0, r.coords.nbytes(), stream));
  LATTICE_CUDA_CHECK(cudaMemsetAsync(r.counts.raw(), 0, r.counts.nbytes(), stream));

  // 1. cells and the first point of every key.
  const std::int64_t slots = table_slots(n);
  const Array keys = Array::empty(Shape{slots}, DType::i64, dev);
  const Array first_point = Array::empty(Shape{slots}, DType::i32, dev);
  const VoxelTable table{ptr<unsigned long long>(keys), ptr<std::int32_t>(first_point),
                         static_cast<unsigned long long>(slots - 1)};
  Array cells = Array::empty(Shape{n, 4}, DType::i32, dev);
  Array slot_of = Array::empty(Shape{n}, DType::u32, dev);
  Array bad = Array::empty(Shape{2}, DType::i32, dev);
  if (points.dtype() == DType::f32) {
    cells_and_table<float>(points, batch_indices, params, table, slots, cells, slot_of, bad, stream, op);
  } else {
    cells_and_table<double>(points, batch_indices, params, table, slots, cells, slot_of, bad, stream, op);
  }

  // 2. first-seen row numbers; the voxel count is the flag total.
  Array flags = Array::empty(Shape{n}, DType::i32, dev);
  Array first_row = Array::empty(Shape{n}, DType::i32, dev);
  first_flags_kernel<<<grid_for(n, k_threads), k_threads, 0, stream>>>(
      ptr<const int4>(cells), ptr<const std::uint32_t>(slot_of), ptr<const std::int32_t>(first_point), n,
      ptr<std::int32_t>(flags));
  LATTICE_CUDA_LAUNCH_CHECK();
  exclusive_sum_with_total(flags, first_row, r.active_rows);

  // 3. rows, counts, coordinates (and the sort input).
  const bool with_feats = c > 0;
  Array sort_keys, sort_values;
  if (with_feats) {
    sort_keys = Array::empty(Shape{n}, DType::u32, dev);
    sort_values = Array::empty(Shape{n}, DType::i32, dev);
  }
  const int3 stride{params.stride.x, params.stride.y, params.stride.z};
  assign_kernel<<<grid_for(n, k_threads), k_threads, 0, stream>>>(
      ptr<const int4>(cells), ptr<const std::uint32_t>(slot_of), ptr<const std::int32_t>(first_point),
      ptr<const std::int32_t>(first_row), n, stride, ptr<std::int32_t>(r.inverse_rows), ptr<std::int32_t>(r.counts),
      ptr<int4>(r.coords), with_feats ? ptr<std::uint32_t>(sort_keys) : nullptr,
      with_feats ? ptr<std::int32_t>(sort_values) : nullptr);
  LATTICE_CUDA_LAUNCH_CHECK();
  if (!with_feats) return r;

  // 4. features: points grouped by voxel in point order (stable sort; keys are
  // rows 0 .. n-1 and the skip marker n, so only their low bits are sorted),
  // then segment starts from the counts.
  Array sorted_rows, point_of;
  sort_pairs(sort_keys, sort_values, sorted_rows, point_of, 0,
             static_cast<int>(std::bit_width(static_cast<std::uint64_t>(n))));
  Array seg_begin = std::move(flags);  // flags are no longer needed: reuse the storage
  Array seg_total = Array::empty(Shape{}, DType::i32, dev);
  exclusive_sum_with_total(r.counts, seg_begin, seg_total);
  visit_float_device(feat_dtype, [&]<class T>() {
    switch (params.reduction) {
      case ops::Reduction::mean:
        launch_reduce<T, ops::Reduction::mean>(*feats, point_of, seg_begin, r.counts, r.active_rows, r.feats, stream);
        break;
      case ops::Reduction::sum:
        launch_reduce<T, ops::Reduction::sum>(*feats, point_of, seg_begin, r.counts, r.active_rows, r.feats, stream);
        break;
      case ops::Reduction::max:
        launch_reduce<T, ops::Reduction::max>(*feats, point_of, seg_begin, r.counts, r.active_rows, r.feats, stream);
        break;
    }
  });
  return r;
}

}  // namespace lattice::cuda
