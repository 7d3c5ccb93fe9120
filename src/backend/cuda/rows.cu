// CUDA row selection (SPEC §7, Appendix A "Row selection"): the same rows in
// the same order as backend/cpu/rows_cpu.cpp, with no host synchronisation.
//
// Every op first builds `sel` (output row -> input row, int32, an upper-bound
// capacity) and a device count, then one gather copies coordinates and feature
// bytes (bitwise) for output rows below the count and zeroes the rest.
//  - prune: sel = rows; out-of-range and repeated indices are found with
//    integer atomicMin (lowest offending position, as the CPU's scan reports);
//  - prune_mask, crop: flag per active row + exclusive scan (CUB) -> positions,
//    the flag total is the count;
//  - topk_rows: stable radix sort by descending score bits (64-bit, -0 folded
//    into +0), then a stable sort by batch: rows end up grouped by batch,
//    by score descending, ties in row order. A batch histogram (integer
//    atomics) and its scan give each position its rank in its batch; ranks
//    below k_b are flagged and scanned as above.
// Bad values found on the device set the sticky error slot (cuda::ErrorCode in errors.hpp).
#include <cmath>
#include <cstdint>
#include <limits>

#include <cub/cub.cuh>
#include <cuda_runtime.h>

#include "backend/cuda/api_rows.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/errors.hpp"
#include "backend/cuda/scan.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cuda {

namespace {

using device::read_count;

constexpr int k_threads = 256;
constexpr std::int32_t k_none = std::numeric_limits<std::int32_t>::max();
// Histogram slots: every valid batch index (<= k_batch_max) has one.
constexpr int k_batch_slots = 1024;
// Sort key of rows that are not active (after every batch).
constexpr std::uint32_t k_inactive_batch = k_batch_slots;

// ---- the shared gather ----------------------------------------------------------

// One thread per output row: coordinates of sel[j] for j < count, zero beyond
// (and for sel[j] < 0, a row rejected by a sticky check).
__global__ void gather_coords_kernel(const int4* __restrict__ coords, const std::int32_t* __restrict__ sel,
                                     const std::int32_t* __restrict__ count, std::int64_t cap, int4* __restrict__ out) {
  const std::int64_t m = read_count(count, cap);
  LATTICE_GRID_LOOP(j, cap) {
    const std::int32_t r = j < m ? sel[j] : -1;
    out[j] = r >= 0 ? coords[r] : make_int4(0, 0, 0, 0);
  }
}

// One thread per output element, copied as raw bits of the element's width.
template <class W>
__global__ void gather_feats_kernel(const W* __restrict__ feats, const std::int32_t* __restrict__ sel,
                                    const std::int32_t* __restrict__ count, std::int64_t cap, std::int64_t c,
                                    W* __restrict__ out) {
  const std::int64_t m = read_count(count, cap);
  LATTICE_GRID_LOOP(e, cap * c) {
    const std::int64_t j = e / c;
    const std::int32_t r = j < m ? sel[j] : -1;
    out[e] = r >= 0 ? feats[static_cast<std::int64_t>(r) * c + (e - j * c)] : W{0};
  }
}

template <class W>
void launch_gather_feats(const Array& feats, const Array& sel, const Array& count, std::int64_t cap, Array& out,
                         cudaStream_t stream) {
  const std::int64_t c = feats.dim(1);
  if (cap * c == 0) return;
  gather_feats_kernel<W><<<grid_for(cap * c, k_threads), k_threads, 0, stream>>>(
      static_cast<const W*>(feats.raw()), ptr<const std::int32_t>(sel), ptr<const std::int32_t>(count), cap, c,
      static_cast<W*>(out.raw()));
  LATTICE_CUDA_LAUNCH_CHECK();
}

// Output arrays for `sel` (cap entries) and its device count.
RowSubset gather(const CoordinateSet& set, const Array& feats, const Array& sel, Array count, std::int64_t cap,
                 cudaStream_t stream) {
  const Device dev = feats.device();
  RowSubset out;
  out.coords = Array::empty(Shape{cap, 4}, DType::i32, dev);
  out.feats = Array::empty(Shape{cap, feats.dim(1)}, feats.dtype(), dev);
  out.active_rows = std::move(count);
  if (cap == 0) return out;
  gather_coords_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
      ptr<const int4>(set.coords()), ptr<const std::int32_t>(sel), ptr<const std::int32_t>(out.active_rows), cap,
      ptr<int4>(out.coords));
  LATTICE_CUDA_LAUNCH_CHECK();
  switch (itemsize(feats.dtype())) {
    case 2:
      launch_gather_feats<std::uint16_t>(feats, sel, out.active_rows, cap, out.feats, stream);
      break;
    case 4:
      launch_gather_feats<std::uint32_t>(feats, sel, out.active_rows, cap, out.feats, stream);
      break;
    default:
      launch_gather_feats<std::uint64_t>(feats, sel, out.active_rows, cap, out.feats, stream);
      break;
  }
  return out;
}

// ---- flag + scan selection (prune_mask, crop, topk) ---------------------------------

__global__ void scatter_kernel(const std::int32_t* __restrict__ flags, const std::int32_t* __restrict__ pos,
                               const std::int32_t* __restrict__ source, std::int64_t n,
                               std::int32_t* __restrict__ sel) {
  LATTICE_GRID_LOOP(i, n) {
    if (flags[i] != 0) sel[pos[i]] = source != nullptr ? source[i] : static_cast<std::int32_t>(i);
  }
}

// sel[pos[i]] = source[i] (or i) for flagged i; the count is the flag total.
RowSubset select_flagged(const CoordinateSet& set, const Array& feats, const Array& flags, const Array* source,
                         cudaStream_t stream) {
  const std::int64_t n = flags.dim(0);
  const Device dev = feats.device();
  Array pos = Array::empty(Shape{n}, DType::i32, dev);
  Array count = Array::empty(Shape{}, DType::i32, dev);
  Array sel = Array::empty(Shape{n}, DType::i32, dev);
  exclusive_sum_with_total(flags, pos, count);  // n == 0 writes a zero count
  if (n > 0) {
    scatter_kernel<<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(flags), ptr<const std::int32_t>(pos),
        source != nullptr ? ptr<const std::int32_t>(*source) : nullptr, n, ptr<std::int32_t>(sel));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return gather(set, feats, sel, std::move(count), n, stream);
}

// ---- prune ----------------------------------------------------------------------------

__global__ void fill_kernel(std::int32_t* __restrict__ p, std::int64_t n, std::int32_t value) {
  LATTICE_GRID_LOOP(i, n) { p[i] = value; }
}

// sel[j] = rows[j] when in range (else -1; lowest such j into bad[0]); first[r] = lowest j selecting r.
template <class I>
__global__ void prune_index_kernel(const I* __restrict__ rows, std::int64_t m, const std::int32_t* __restrict__ active,
                                   std::int64_t cap, std::int32_t* __restrict__ first, std::int32_t* __restrict__ sel,
                                   std::int32_t* __restrict__ bad) {
  const std::int64_t n = read_count(active, cap);
  LATTICE_GRID_LOOP(j, m) {
    const long long r = static_cast<long long>(rows[j]);
    if (r < 0 || r >= n) {
      atomicMin(&bad[0], static_cast<std::int32_t>(j));
      sel[j] = -1;
    } else {
      atomicMin(&first[r], static_cast<std::int32_t>(j));
      sel[j] = static_cast<std::int32_t>(r);
    }
  }
}

// A position whose row was selected earlier is a duplicate (lowest into bad[1]); its row is dropped.
__global__ void prune_duplicate_kernel(std::int64_t m, const std::int32_t* __restrict__ first,
                                       std::int32_t* __restrict__ sel, std::int32_t* __restrict__ bad) {
  LATTICE_GRID_LOOP(j, m) {
    const std::int32_t r = sel[j];
    if (r >= 0 && first[r] != j) {
      atomicMin(&bad[1], static_cast<std::int32_t>(j));
      sel[j] = -1;
    }
  }
}

// One thread: the count, and the lowest offending position (the CPU's report).
template <class I>
__global__ void prune_report_kernel(const I* __restrict__ rows, std::int64_t m, const std::int32_t* __restrict__ active,
                                    std::int64_t cap, const std::int32_t* __restrict__ first,
                                    const std::int32_t* __restrict__ bad, std::int32_t* __restrict__ count,
                                    ErrorSlot* slot, int op) {
  *count = static_cast<std::int32_t>(m);
  const std::int32_t out_of_range = bad[0];
  const std::int32_t duplicate = bad[1];
  if (out_of_range == k_none && duplicate == k_none) return;
  if (out_of_range < duplicate) {
    device::record_error(slot, ErrorCode::row_index_out_of_range, op, out_of_range,
                         static_cast<long long>(rows[out_of_range]), read_count(active, cap));
  } else {
    const long long r = static_cast<long long>(rows[duplicate]);
    device::record_error(slot, ErrorCode::duplicate_row_index, op, first[r], duplicate, r);
  }
}

template <class I>
void prune_launch(const CoordinateSet& set, const Array& rows, Array& first, Array& sel, Array& bad, Array& count,
                  const char* op, cudaStream_t stream) {
  const std::int64_t m = rows.dim(0);
  const std::int64_t cap = set.capacity();
  const auto* active = ptr<const std::int32_t>(set.active_rows());
  if (m > 0) {
    prune_index_kernel<I><<<grid_for(m, k_threads), k_threads, 0, stream>>>(
        ptr<const I>(rows), m, active, cap, ptr<std::int32_t>(first), ptr<std::int32_t>(sel), ptr<std::int32_t>(bad));
    LATTICE_CUDA_LAUNCH_CHECK();
    prune_duplicate_kernel<<<grid_for(m, k_threads), k_threads, 0, stream>>>(
        m, ptr<const std::int32_t>(first), ptr<std::int32_t>(sel), ptr<std::int32_t>(bad));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  prune_report_kernel<I><<<1, 1, 0, stream>>>(ptr<const I>(rows), m, active, cap, ptr<const std::int32_t>(first),
                                              ptr<const std::int32_t>(bad), ptr<std::int32_t>(count),
                                              error_slot(set.device().index), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
}

// ---- prune_mask / crop flags ---------------------------------------------------------------

template <class M>
__global__ void mask_flags_kernel(const M* __restrict__ mask, std::int64_t n, const std::int32_t* __restrict__ active,
                                  std::int64_t cap, std::int32_t* __restrict__ flags) {
  const std::int64_t rows = read_count(active, cap);
  LATTICE_GRID_LOOP(i, n) { flags[i] = i < rows && mask[i] != M{0} ? 1 : 0; }
}

__global__ void mask_length_kernel(std::int64_t len, const std::int32_t* __restrict__ active, std::int64_t cap,
                                   ErrorSlot* slot, int op) {
  const std::int64_t rows = read_count(active, cap);
  if (len != rows) device::record_error(slot, ErrorCode::mask_length, op, len, rows);
}

__global__ void crop_flags_kernel(const int4* __restrict__ coords, const std::int32_t* __restrict__ active,
                                  std::int64_t cap, int3 lo, int3 hi, std::int32_t* __restrict__ flags) {
  const std::int64_t rows = read_count(active, cap);
  LATTICE_GRID_LOOP(i, cap) {
    const int4 c = coords[i];
    flags[i] = i < rows && c.y >= lo.x && c.y <= hi.x && c.z >= lo.y && c.z <= hi.y && c.w >= lo.z && c.w <= hi.z;
  }
}

// ---- topk -----------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ double score_of(T v) {
  return static_cast<double>(device::load(v));
}

// Ascending order of the result = descending score; -0 and +0 share a key (they tie).
__device__ __forceinline__ unsigned long long descending_bits(double s) {
  const unsigned long long sign = 1ULL << 63;
  auto u = static_cast<unsigned long long>(__double_as_longlong(s));
  if (u == sign) u = 0;  // -0 -> +0, by bits (immune to value-level folding)
  const unsigned long long ordered = (u & sign) != 0 ? ~u : (u | sign);
  return ~ordered;
}

// Keys by score, row indices, batch histogram; NaN scores (lowest row ->
// bad[1]) and batch indices without a count (lowest row -> bad[0]).
template <class T>
__global__ void topk_keys_kernel(const T* __restrict__ feats, std::int64_t c, const int4* __restrict__ coords,
                                 const std::int32_t* __restrict__ active, std::int64_t cap, std::int64_t num_counts,
                                 unsigned long long* __restrict__ keys, std::int32_t* __restrict__ rows,
                                 std::int32_t* __restrict__ hist, std::int32_t* __restrict__ bad) {
  const std::int64_t n = read_count(active, cap);
  LATTICE_GRID_LOOP(i, cap) {
    unsigned long long key = ~0ULL;
    if (i < n) {
      const double s = score_of(feats[i * c]);
      const int b = coords[i].x;
      if (isnan(s)) {
        atomicMin(&bad[1], static_cast<std::int32_t>(i));
      } else {
        key = descending_bits(s);
      }
      if (b >= num_counts) atomicMin(&bad[0], static_cast<std::int32_t>(i));
      if (b >= 0 && b < k_batch_slots) atomicAdd(&hist[b], 1);
    }
    keys[i] = key;
    rows[i] = static_cast<std::int32_t>(i);
  }
}

// Batch sort keys of the score-sorted rows (inactive rows after every batch).
__global__ void topk_batch_keys_kernel(const std::int32_t* __restrict__ rows, const int4* __restrict__ coords,
                                       const std::int32_t* __restrict__ active, std::int64_t cap,
                                       std::uint32_t* __restrict__ keys) {
  const std::int64_t n = read_count(active, cap);
  LATTICE_GRID_LOOP(p, cap) {
    const std::int32_t r = rows[p];
    keys[p] = r < n ? static_cast<std::uint32_t>(coords[r].x) : k_inactive_batch;
  }
}

// k_b = min(floor(counts[b] * rho), rows_b) in float64, as the CPU; negative
// counts are errors (lowest b -> bad[2]) and keep nothing.
template <class I>
__global__ void topk_k_kernel(const I* __restrict__ counts, std::int64_t num_counts, double rho,
                              const std::int32_t* __restrict__ hist, std::int32_t* __restrict__ k,
                              std::int32_t* __restrict__ bad) {
  LATTICE_GRID_LOOP(b, k_batch_slots) {
    std::int32_t kb = 0;
    if (b < num_counts) {
      const long long cb = static_cast<long long>(counts[b]);
      if (cb < 0) {
        atomicMin(&bad[2], static_cast<std::int32_t>(b));
      } else {
        const double want = floor(__dmul_rn(static_cast<double>(cb), rho));
        kb = want >= static_cast<double>(hist[b]) ? hist[b] : static_cast<std::int32_t>(want);
      }
    }
    k[b] = kb;
  }
}

__global__ void topk_flags_kernel(const std::uint32_t* __restrict__ batch, const std::int32_t* __restrict__ start,
                                  const std::int32_t* __restrict__ k, std::int64_t cap,
                                  std::int32_t* __restrict__ flags) {
  LATTICE_GRID_LOOP(p, cap) {
    const std::uint32_t b = batch[p];
    flags[p] = b < k_inactive_batch && p - start[b] < k[b] ? 1 : 0;
  }
}

// One thread: the CPU's precedence (counts, then batch indices, then NaN scores).
template <class I>
__global__ void topk_report_kernel(const I* __restrict__ counts, const int4* __restrict__ coords,
                                   std::int64_t num_counts, const std::int32_t* __restrict__ bad, ErrorSlot* slot,
                                   int op) {
  if (bad[2] != k_none) {
    device::record_error(slot, ErrorCode::negative_count, op, bad[2], static_cast<long long>(counts[bad[2]]));
  } else if (bad[0] != k_none) {
    device::record_error(slot, ErrorCode::batch_beyond_counts, op, bad[0], coords[bad[0]].x, num_counts);
  } else if (bad[1] != k_none) {
    device::record_error(slot, ErrorCode::nan_score, op, bad[1]);
  }
}

// Stable ascending radix sort of 64-bit keys with int32 values.
void sort_pairs_u64(const Array& keys, const Array& values, Array& keys_out, Array& values_out, cudaStream_t stream) {
  const std::int64_t n = keys.dim(0);
  std::size_t temp = 0;
  const auto* kin = static_cast<const unsigned long long*>(keys.raw());
  auto* kout = static_cast<unsigned long long*>(keys_out.raw());
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, kin, kout, ptr<const std::int32_t>(values),
                                                     ptr<std::int32_t>(values_out), static_cast<int>(n), 0, 64,
                                                     stream));
  Array scratch = Array::empty(Shape{static_cast<std::int64_t>(temp)}, DType::u8, keys.device());
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.raw(), temp, kin, kout, ptr<const std::int32_t>(values),
                                                     ptr<std::int32_t>(values_out), static_cast<int>(n), 0, 64,
                                                     stream));
}

void check_rows_fit(std::int64_t n, const char* op) {
  check(n < (std::int64_t{1} << 31), op, "x", n, " rows exceed int32 row indices");
}

}  // namespace

RowSubset prune_rows(const CoordinateSet& set, const Array& feats, const Array& rows, const char* op) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t m = rows.dim(0);
  const std::int64_t cap = set.capacity();
  check_rows_fit(cap, op);
  Array first = Array::empty(Shape{cap}, DType::i32, dev);
  Array sel = Array::empty(Shape{m}, DType::i32, dev);
  Array bad = Array::empty(Shape{2}, DType::i32, dev);
  Array count = Array::empty(Shape{}, DType::i32, dev);
  if (cap > 0) {
    fill_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(ptr<std::int32_t>(first), cap, k_none);
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  fill_kernel<<<1, k_threads, 0, stream>>>(ptr<std::int32_t>(bad), 2, k_none);
  LATTICE_CUDA_LAUNCH_CHECK();
  if (rows.dtype() == DType::i64) {
    prune_launch<long long>(set, rows, first, sel, bad, count, op, stream);
  } else {
    prune_launch<std::int32_t>(set, rows, first, sel, bad, count, op, stream);
  }
  return gather(set, feats, sel, std::move(count), m, stream);
}

RowSubset mask_rows(const CoordinateSet& set, const Array& feats, const Array& mask, bool check_length,
                    const char* op) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = set.capacity();
  check_rows_fit(cap, op);
  const std::int64_t len = mask.dim(0);
  const std::int64_t n = len < cap ? len : cap;
  const auto* active = ptr<const std::int32_t>(set.active_rows());
  if (check_length) {
    mask_length_kernel<<<1, 1, 0, stream>>>(len, active, cap, error_slot(dev.index), op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  Array flags = Array::empty(Shape{n}, DType::i32, dev);
  if (n > 0) {
    auto launch = [&]<class M>() {
      mask_flags_kernel<M><<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const M>(mask), n, active, cap,
                                                                             ptr<std::int32_t>(flags));
      LATTICE_CUDA_LAUNCH_CHECK();
    };
    if (mask.dtype() == DType::u8) {
      launch.operator()<std::uint8_t>();
    } else if (mask.dtype() == DType::i32) {
      launch.operator()<std::int32_t>();
    } else {
      launch.operator()<long long>();
    }
  }
  return select_flagged(set, feats, flags, nullptr, stream);
}

RowSubset crop_rows(const CoordinateSet& set, const Array& feats, Int3 lo, Int3 hi) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = set.capacity();
  check_rows_fit(cap, "crop");
  Array flags = Array::empty(Shape{cap}, DType::i32, dev);
  if (cap > 0) {
    crop_flags_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
        ptr<const int4>(set.coords()), ptr<const std::int32_t>(set.active_rows()), cap, int3{lo.x, lo.y, lo.z},
        int3{hi.x, hi.y, hi.z}, ptr<std::int32_t>(flags));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return select_flagged(set, feats, flags, nullptr, stream);
}

RowSubset topk_rows(const CoordinateSet& set, const Array& feats, const Array& counts, double rho, const char* op) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = set.capacity();
  check_rows_fit(cap, op);
  const std::int64_t num_counts = counts.dim(0);
  const std::int64_t c = feats.dim(1);
  const auto* active = ptr<const std::int32_t>(set.active_rows());
  const auto* coords = ptr<const int4>(set.coords());

  Array hist = Array::empty(Shape{k_batch_slots}, DType::i32, dev);
  Array bad = Array::empty(Shape{3}, DType::i32, dev);
  LATTICE_CUDA_CHECK(cudaMemsetAsync(hist.raw(), 0, hist.nbytes(), stream));
  fill_kernel<<<1, k_threads, 0, stream>>>(ptr<std::int32_t>(bad), 3, k_none);
  LATTICE_CUDA_LAUNCH_CHECK();

  // 1. score keys (and checks), 2. stable sort by score, 3. stable sort by batch.
  Array score_keys = Array::empty(Shape{cap}, DType::i64, dev);
  Array rows = Array::empty(Shape{cap}, DType::i32, dev);
  Array batch_keys = Array::empty(Shape{cap}, DType::u32, dev);
  Array by_batch_keys, by_batch_rows;
  if (cap > 0) {
    visit_float_device(feats.dtype(), [&]<class T>() {
      topk_keys_kernel<T><<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
          ptr<const T>(feats), c, coords, active, cap, num_counts, ptr<unsigned long long>(score_keys),
          ptr<std::int32_t>(rows), ptr<std::int32_t>(hist), ptr<std::int32_t>(bad));
      LATTICE_CUDA_LAUNCH_CHECK();
    });
    Array sorted_keys = Array::empty(Shape{cap}, DType::i64, dev);
    Array by_score = Array::empty(Shape{cap}, DType::i32, dev);
    sort_pairs_u64(score_keys, rows, sorted_keys, by_score, stream);
    topk_batch_keys_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(by_score), coords, active, cap, ptr<std::uint32_t>(batch_keys));
    LATTICE_CUDA_LAUNCH_CHECK();
    // Batch keys are < 2^11 (k_inactive_batch = 1024 included).
    sort_pairs(batch_keys, by_score, by_batch_keys, by_batch_rows, 0, 11);
  } else {
    by_batch_keys = batch_keys;
    by_batch_rows = rows;
  }

  // 4. batch starts and k_b, 5. rank < k_b flags.
  Array start = Array::empty(Shape{k_batch_slots}, DType::i32, dev);
  Array total = Array::empty(Shape{}, DType::i32, dev);
  exclusive_sum_with_total(hist, start, total);
  Array k = Array::empty(Shape{k_batch_slots}, DType::i32, dev);
  auto per_batch = [&]<class I>() {
    topk_k_kernel<I><<<grid_for(k_batch_slots, k_threads), k_threads, 0, stream>>>(
        ptr<const I>(counts), num_counts, rho, ptr<const std::int32_t>(hist), ptr<std::int32_t>(k),
        ptr<std::int32_t>(bad));
    LATTICE_CUDA_LAUNCH_CHECK();
    topk_report_kernel<I><<<1, 1, 0, stream>>>(ptr<const I>(counts), coords, num_counts, ptr<const std::int32_t>(bad),
                                               error_slot(dev.index), op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
  };
  if (counts.dtype() == DType::i64) {
    per_batch.operator()<long long>();
  } else {
    per_batch.operator()<std::int32_t>();
  }
  Array flags = Array::empty(Shape{cap}, DType::i32, dev);
  if (cap > 0) {
    topk_flags_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
        ptr<const std::uint32_t>(by_batch_keys), ptr<const std::int32_t>(start), ptr<const std::int32_t>(k), cap,
        ptr<std::int32_t>(flags));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return select_flagged(set, feats, flags, &by_batch_rows, stream);
}

}  // namespace lattice::cuda
