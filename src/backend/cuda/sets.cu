// CUDA sparse algebra and coordinate sets.
//
// Every variable-size result follows one pattern: a kernel flags the rows that
// belong to the output (bounded by the device-side active count), an exclusive
// scan (scan.hpp) turns the flags into output positions and a device total, and
// a scatter kernel writes row i to position pos[i]. Positions follow row order,
// so results keep first-seen order and are identical run to run; no float
// atomics anywhere (integer atomicMin picks the first row of a coarse key).
// Row matching uses the cached device hash index of a set (coord_index.hpp).
// Sizes stay on the device: capacities are host-known upper bounds.
#include <cstdint>

#include <cub/cub.cuh>

#include "backend/cuda/api_sets.hpp"
#include "backend/cuda/coord_index.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/hash.cuh"
#include "backend/cuda/errors.hpp"
#include "backend/cuda/scan.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;

using device::ConstHashView;
using device::HashView;
using device::read_count;
using lattice::detail::floor_div;

HashView view(const CudaCoordIndex& t) {
  return {reinterpret_cast<unsigned long long*>(t.keys.raw()), ptr<std::int32_t>(t.values), t.mask()};
}
ConstHashView const_view(const CudaCoordIndex& t) {
  return {reinterpret_cast<const unsigned long long*>(t.keys.raw()), ptr<std::int32_t>(t.values), t.mask()};
}

Array i32(std::int64_t n, Device dev) { return Array::empty(Shape{n}, DType::i32, dev); }

void fill_bytes(Array& a, int byte, cudaStream_t stream) {
  if (a.nbytes() > 0) LATTICE_CUDA_CHECK(cudaMemsetAsync(a.raw(), byte, a.nbytes(), stream));
}

// Row of the table holding physical coordinate c exactly; -1 when absent or off the lattice.
__device__ __forceinline__ std::int32_t find_physical(const ConstHashView& t, const std::int32_t* c, int sx, int sy,
                                                      int sz) {
  if (c[1] % sx != 0 || c[2] % sy != 0 || c[3] % sz != 0) return -1;
  return device::lookup(t, c[0], c[1] / sx, c[2] / sy, c[3] / sz);
}

// match[i] = row of `table` at query row i (exact), -1 beyond *rows. flag[i]
// (optional) = 1 where the row is active and (matched != want_absent).
__global__ void k_match(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, ConstHashView t, int sx,
                        int sy, int sz, std::int32_t* match, std::int32_t* flag, bool want_absent) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, cap) {
    const std::int32_t m = i < n ? find_physical(t, coords + 4 * i, sx, sy, sz) : -1;
    if (match) match[i] = m;
    if (flag) flag[i] = (i < n && (m < 0) == want_absent) ? 1 : 0;
  }
}

// Output row pos[i] (+ *base) takes row i where flag[i]: its coordinates and both row maps.
__global__ void k_scatter_rows(const std::int32_t* flag, const std::int32_t* pos, const std::int32_t* base,
                               std::int64_t cap, const int4* coords, const std::int32_t* match, bool self_is_lhs,
                               int4* out_coords, std::int32_t* lhs_rows, std::int32_t* rhs_rows) {
  const std::int64_t offset = base ? *base : 0;
  LATTICE_GRID_LOOP(i, cap) {
    if (!flag[i]) continue;
    const std::int64_t o = offset + pos[i];
    out_coords[o] = coords[i];
    lhs_rows[o] = self_is_lhs ? static_cast<std::int32_t>(i) : -1;
    rhs_rows[o] = self_is_lhs ? (match ? match[i] : -1) : static_cast<std::int32_t>(i);
  }
}

// Outer join, left part: output row i = lhs row i for i < *rows.
__global__ void k_copy_lhs(const int4* coords, const std::int32_t* rows, std::int64_t cap, const std::int32_t* match,
                           int4* out_coords, std::int32_t* lhs_rows, std::int32_t* rhs_rows) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, n) {
    out_coords[i] = coords[i];
    lhs_rows[i] = static_cast<std::int32_t>(i);
    rhs_rows[i] = match[i];
  }
}

__global__ void k_identity_rows(const std::int32_t* rows, std::int64_t cap, std::int32_t* out) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, cap) { out[i] = i < n ? static_cast<std::int32_t>(i) : -1; }
}

// *out = *a + *b (the outer join's row count).
__global__ void k_add_counts(const std::int32_t* a, std::int64_t a_cap, const std::int32_t* b, std::int32_t* out) {
  *out = static_cast<std::int32_t>(read_count(a, a_cap)) + *b;
}

template <class T>
__device__ __forceinline__ T apply(int op, T a, T b) {
  switch (static_cast<ops::BinaryOp>(op)) {
    case ops::BinaryOp::add:
      return a + b;
    case ops::BinaryOp::sub:
      return a - b;
    case ops::BinaryOp::mul:
      return a * b;
    case ops::BinaryOp::maximum:  // same expression as the CPU backend: NaN propagates
      return isnan(a) ? a : (isnan(b) ? b : (a > b ? a : b));
    case ops::BinaryOp::minimum:
      return isnan(a) ? a : (isnan(b) ? b : (a < b ? a : b));
  }
  return a;
}

template <class T>
__global__ void k_binary(const T* a, const T* b, const std::int32_t* lr, const std::int32_t* rr,
                         const std::int32_t* rows, std::int64_t cap, std::int64_t c, int op, device::compute_t<T> fa,
                         device::compute_t<T> fb, T* y) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(e, cap * c) {
    const std::int64_t r = e / c, j = e % c;
    if (r >= n) {
      y[e] = device::store<T>(0.0f);
      continue;
    }
    const std::int64_t i = lr ? lr[r] : r;
    const std::int64_t k = rr ? rr[r] : r;
    // A missing side is its fill value exactly, never derived from a row.
    const auto va = i >= 0 ? device::load(a[i * c + j]) : fa;
    const auto vb = k >= 0 ? device::load(b[k * c + j]) : fb;
    y[e] = device::store<T>(apply(op, va, vb));
  }
}

template <class T>
__global__ void k_gather(const T* x, const std::int32_t* x_rows, std::int64_t x_cap, const std::int32_t* rows,
                         std::int64_t n_out, std::int64_t c, device::compute_t<T> fill, T* y, ErrorSlot* err, int op) {
  const std::int64_t nx = read_count(x_rows, x_cap);
  LATTICE_GRID_LOOP(e, n_out * c) {
    const std::int64_t i = e / c, j = e % c;
    const std::int32_t r = rows[i];
    if (r < -1 || r >= nx) {
      if (j == 0) device::record_error(err, ErrorCode::row_or_absent_out_of_range, op, i, r, nx);
      y[e] = device::store<T>(fill);
    } else {
      y[e] = r >= 0 ? x[static_cast<std::int64_t>(r) * c + j] : device::store<T>(fill);
    }
  }
}

template <class W>
__global__ void k_permute(const W* src, const std::int32_t* perm, std::int64_t n, std::int64_t words, W* out) {
  LATTICE_GRID_LOOP(e, n * words) {
    const std::int64_t i = e / words, w = e % words;
    out[e] = src[static_cast<std::int64_t>(perm[i]) * words + w];
  }
}

// out[i] = row of `table` at floor(c / s_t) * s_t (s_t: the table's stride), -1 beyond *rows.
__global__ void k_match_floor(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, ConstHashView t,
                              int sx, int sy, int sz, std::int32_t* out) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, cap) {
    const std::int32_t* c = coords + 4 * i;
    out[i] = i < n ? device::lookup(t, c[0], floor_div(c[1], sx), floor_div(c[2], sy), floor_div(c[3], sz)) : -1;
  }
}

__global__ void k_lookup(const std::int32_t* coords, std::int64_t m, ConstHashView t, int sx, int sy, int sz,
                         std::int32_t* rows, std::uint8_t* mask) {
  LATTICE_GRID_LOOP(i, m) {
    const std::int32_t r = find_physical(t, coords + 4 * i, sx, sy, sz);
    if (rows) rows[i] = r;
    if (mask) mask[i] = r >= 0 ? 1 : 0;
  }
}

__device__ __forceinline__ unsigned long long coarse_key(const std::int32_t* c, int sx, int sy, int sz) {
  // Coarse logical coordinates are no larger than the fine ones: they fit the key.
  return lattice::detail::pack_key(c[0], floor_div(c[1], sx), floor_div(c[2], sy), floor_div(c[3], sz));
}

// The first (lowest) row of each coarse key wins (integer atomicMin: deterministic).
__global__ void k_ds_claim(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx, int sy,
                           int sz, HashView t) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, n) {
    const unsigned long long slot = device::hash_claim(t, coarse_key(coords + 4 * i, sx, sy, sz));
    atomicMin(reinterpret_cast<unsigned*>(&t.values[slot]), static_cast<unsigned>(i));
  }
}

__global__ void k_ds_flag(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx, int sy,
                          int sz, ConstHashView t, std::int32_t* flag) {
  const std::int64_t n = read_count(rows, cap);
  LATTICE_GRID_LOOP(i, cap) {
    flag[i] = (i < n && device::hash_find(t, coarse_key(coords + 4 * i, sx, sy, sz)) == i) ? 1 : 0;
  }
}

__global__ void k_ds_scatter(const std::int32_t* coords, const std::int32_t* flag, const std::int32_t* pos,
                             std::int64_t cap, int sx, int sy, int sz, int4* out) {
  LATTICE_GRID_LOOP(i, cap) {
    if (!flag[i]) continue;
    const std::int32_t* c = coords + 4 * i;
    out[pos[i]] = make_int4(c[0], floor_div(c[1], sx) * sx, floor_div(c[2], sy) * sy, floor_div(c[3], sz) * sz);
  }
}

// Morton codes (Appendix A). `check`: validate raw coordinates (sticky errors).
__global__ void k_morton(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx, int sy, int sz,
                         bool check, ErrorSlot* err, int op, unsigned long long* out) {
  const std::int64_t n = rows ? read_count(rows, cap) : cap;
  const int s[3] = {sx, sy, sz};
  LATTICE_GRID_LOOP(i, cap) {
    if (i >= n) {
      out[i] = ~0ULL;
      continue;
    }
    const std::int32_t* c = coords + 4 * i;
    if (check && (c[0] < 0 || c[0] >= 1024)) device::record_error(err, ErrorCode::morton_batch_range, op, i, c[0]);
    unsigned long long code_bits = static_cast<unsigned long long>(static_cast<unsigned>(c[0]) & 1023u) << 54;
    for (int a = 0; a < 3; ++a) {
      const std::int32_t v = c[a + 1];
      if (check && v % s[a] != 0) device::record_error(err, ErrorCode::not_divisible, op, i, a, v, s[a]);
      const std::int32_t l = v / s[a];
      if (check && !lattice::detail::axis_fits(l)) {
        device::record_error(err, ErrorCode::coordinate_overflow, op, i, a, v, s[a]);
      }
      const unsigned long long u = static_cast<unsigned long long>(l + (1 << 17)) & ((1ULL << 18) - 1);
      for (int bit = 0; bit < 18; ++bit) code_bits |= ((u >> bit) & 1ULL) << (3 * bit + a);
    }
    out[i] = code_bits;
  }
}

__global__ void k_iota(std::int64_t n, std::int32_t* out) {
  LATTICE_GRID_LOOP(i, n) { out[i] = static_cast<std::int32_t>(i); }
}

}  // namespace

AlignParts align(const CoordinateSet& lhs, const CoordinateSet& rhs, ops::Join join, const char* op) {
  const Device dev = lhs.device();
  const cudaStream_t stream = stream_of(dev);
  const Int3 s = lhs.stride();
  const std::int64_t cap_l = lhs.capacity(), cap_r = rhs.capacity();
  const auto* lc = ptr<const std::int32_t>(lhs.coords());
  const auto* rc = ptr<const std::int32_t>(rhs.coords());
  const auto* ln = ptr<const std::int32_t>(lhs.active_rows());
  const auto* rn = ptr<const std::int32_t>(rhs.active_rows());

  // match[i]: rhs row holding lhs row i's coordinate (-1 beyond lhs's active rows).
  Array match = i32(cap_l, dev);
  Array flag_l = i32(cap_l, dev);
  const ConstHashView t_r = const_view(coord_index(rhs, op));
  k_match<<<grid_for(cap_l, k_threads), k_threads, 0, stream>>>(
      lc, ln, cap_l, t_r, s.x, s.y, s.z, ptr<std::int32_t>(match), ptr<std::int32_t>(flag_l), false);
  LATTICE_CUDA_LAUNCH_CHECK();

  AlignParts out;
  if (join == ops::Join::left) {
    out.lhs_rows = i32(cap_l, dev);
    k_identity_rows<<<grid_for(cap_l, k_threads), k_threads, 0, stream>>>(ln, cap_l, ptr<std::int32_t>(out.lhs_rows));
    LATTICE_CUDA_LAUNCH_CHECK();
    out.rhs_rows = std::move(match);
    return out;
  }
  const std::int64_t cap = join == ops::Join::outer ? cap_l + cap_r : cap_l;
  out.set.coords = Array::empty(Shape{cap, 4}, DType::i32, dev);
  out.set.active_rows = Array::empty(Shape{}, DType::i32, dev);
  out.lhs_rows = i32(cap, dev);
  out.rhs_rows = i32(cap, dev);
  fill_bytes(out.set.coords, 0, stream);
  fill_bytes(out.lhs_rows, 0xff, stream);  // -1: absent, also for capacity rows
  fill_bytes(out.rhs_rows, 0xff, stream);
  auto* oc = ptr<int4>(out.set.coords);
  auto* olr = ptr<std::int32_t>(out.lhs_rows);
  auto* orr = ptr<std::int32_t>(out.rhs_rows);

  if (join == ops::Join::inner) {
    Array pos = i32(cap_l, dev);
    exclusive_sum_with_total(flag_l, pos, out.set.active_rows);
    k_scatter_rows<<<grid_for(cap_l, k_threads), k_threads, 0, stream>>>(
        ptr<std::int32_t>(flag_l), ptr<std::int32_t>(pos), nullptr, cap_l, ptr<const int4>(lhs.coords()),
        ptr<std::int32_t>(match), true, oc, olr, orr);
    LATTICE_CUDA_LAUNCH_CHECK();
    return out;
  }
  // Outer: all lhs rows at their own positions, then rhs-only rows in rhs order.
  k_copy_lhs<<<grid_for(cap_l, k_threads), k_threads, 0, stream>>>(ptr<const int4>(lhs.coords()), ln, cap_l,
                                                                   ptr<std::int32_t>(match), oc, olr, orr);
  LATTICE_CUDA_LAUNCH_CHECK();
  Array flag_r = i32(cap_r, dev);
  Array pos_r = i32(cap_r, dev);
  Array total_r = Array::empty(Shape{}, DType::i32, dev);
  const ConstHashView t_l = const_view(coord_index(lhs, op));
  k_match<<<grid_for(cap_r, k_threads), k_threads, 0, stream>>>(rc, rn, cap_r, t_l, s.x, s.y, s.z, nullptr,
                                                                ptr<std::int32_t>(flag_r), true);
  LATTICE_CUDA_LAUNCH_CHECK();
  exclusive_sum_with_total(flag_r, pos_r, total_r);
  k_scatter_rows<<<grid_for(cap_r, k_threads), k_threads, 0, stream>>>(
      ptr<std::int32_t>(flag_r), ptr<std::int32_t>(pos_r), ln, cap_r, ptr<const int4>(rhs.coords()), nullptr, false, oc,
      olr, orr);
  LATTICE_CUDA_LAUNCH_CHECK();
  k_add_counts<<<1, 1, 0, stream>>>(ln, cap_l, ptr<std::int32_t>(total_r), ptr<std::int32_t>(out.set.active_rows));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

void binary_rows(const Array& lhs, const Array& rhs, const std::optional<Array>& lhs_rows,
                 const std::optional<Array>& rhs_rows, const Array& rows, ops::BinaryOp op, double lhs_fill,
                 double rhs_fill, Array& out) {
  const std::int64_t cap = out.dim(0), c = out.dim(1);
  if (cap * c == 0) return;
  const cudaStream_t stream = stream_of(out.device());
  visit_float_device(out.dtype(), [&]<class T>() {
    using A = device::compute_t<T>;
    k_binary<T><<<grid_for(cap * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(lhs), ptr<const T>(rhs), lhs_rows ? ptr<const std::int32_t>(*lhs_rows) : nullptr,
        rhs_rows ? ptr<const std::int32_t>(*rhs_rows) : nullptr, ptr<const std::int32_t>(rows), cap, c,
        static_cast<int>(op), static_cast<A>(lhs_fill), static_cast<A>(rhs_fill), ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void gather_rows(const Array& x, const Array& x_rows, const Array& rows, double fill, Array& out, const char* op) {
  const std::int64_t n = out.dim(0), c = out.dim(1);
  if (n * c == 0) return;
  const Device dev = out.device();
  visit_float_device(out.dtype(), [&]<class T>() {
    using A = device::compute_t<T>;
    k_gather<T><<<grid_for(n * c, k_threads), k_threads, 0, stream_of(dev)>>>(
        ptr<const T>(x), ptr<const std::int32_t>(x_rows), x.dim(0), ptr<const std::int32_t>(rows), n, c,
        static_cast<A>(fill), ptr<T>(out), error_slot(dev.index), op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void permute_rows(const Array& src, const Array& perm, Array& out) {
  const std::int64_t n = out.dim(0);
  const std::size_t row = out.row_bytes();
  if (n == 0 || row == 0) return;
  const cudaStream_t stream = stream_of(out.device());
  const auto launch = [&]<class W>() {
    const auto words = static_cast<std::int64_t>(row / sizeof(W));
    k_permute<W><<<grid_for(n * words, k_threads), k_threads, 0, stream>>>(
        ptr<const W>(src), ptr<const std::int32_t>(perm), n, words, ptr<W>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  };
  if (row % 4 == 0) {
    launch.template operator()<std::uint32_t>();
  } else if (row % 2 == 0) {
    launch.template operator()<std::uint16_t>();
  } else {
    launch.template operator()<std::uint8_t>();
  }
}

Array identity_rows(const CoordinateSet& set) {
  const std::int64_t cap = set.capacity();
  Array out = i32(cap, set.device());
  if (cap == 0) return out;
  k_identity_rows<<<grid_for(cap, k_threads), k_threads, 0, stream_of(set.device())>>>(
      ptr<const std::int32_t>(set.active_rows()), cap, ptr<std::int32_t>(out));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

Array match_rows(const CoordinateSet& table, const CoordinateSet& query, const char* op) {
  const Device dev = query.device();
  const std::int64_t cap = query.capacity();
  Array out = i32(cap, dev);
  if (cap == 0) return out;
  const Int3 s = table.stride();
  k_match_floor<<<grid_for(cap, k_threads), k_threads, 0, stream_of(dev)>>>(
      ptr<const std::int32_t>(query.coords()), ptr<const std::int32_t>(query.active_rows()), cap,
      const_view(coord_index(table, op)), s.x, s.y, s.z, ptr<std::int32_t>(out));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

namespace {
void lookup_launch(const CoordinateSet& set, const Array& coords, std::int32_t* rows, std::uint8_t* mask,
                   const char* op) {
  const std::int64_t m = coords.dim(0);
  const Int3 s = set.stride();
  k_lookup<<<grid_for(m, k_threads), k_threads, 0, stream_of(set.device())>>>(
      ptr<const std::int32_t>(coords), m, const_view(coord_index(set, op)), s.x, s.y, s.z, rows, mask);
  LATTICE_CUDA_LAUNCH_CHECK();
}
}  // namespace

Array lookup(const CoordinateSet& set, const Array& coords, const char* op) {
  Array out = i32(coords.dim(0), set.device());
  if (coords.dim(0) > 0) lookup_launch(set, coords, ptr<std::int32_t>(out), nullptr, op);
  return out;
}

Array contains(const CoordinateSet& set, const Array& coords, const char* op) {
  Array out = Array::empty(Shape{coords.dim(0)}, DType::u8, set.device());
  if (coords.dim(0) > 0) lookup_launch(set, coords, nullptr, ptr<std::uint8_t>(out), op);
  return out;
}

SetParts downsample(const CoordinateSet& set, Int3 out_stride, const char* op) {
  (void)op;
  const Device dev = set.device();
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = set.capacity();
  const Int3 s = out_stride;
  SetParts out{Array::empty(Shape{cap, 4}, DType::i32, dev), Array::empty(Shape{}, DType::i32, dev)};
  fill_bytes(out.coords, 0, stream);
  Array flag = i32(cap, dev);
  Array pos = i32(cap, dev);
  if (cap > 0) {
    const auto* c = ptr<const std::int32_t>(set.coords());
    const auto* n = ptr<const std::int32_t>(set.active_rows());
    auto table = make_table(cap, dev);
    k_ds_claim<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(c, n, cap, s.x, s.y, s.z, view(*table));
    LATTICE_CUDA_LAUNCH_CHECK();
    k_ds_flag<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(c, n, cap, s.x, s.y, s.z, const_view(*table),
                                                                  ptr<std::int32_t>(flag));
    LATTICE_CUDA_LAUNCH_CHECK();
    exclusive_sum_with_total(flag, pos, out.active_rows);
    k_ds_scatter<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(c, ptr<std::int32_t>(flag), ptr<std::int32_t>(pos),
                                                                     cap, s.x, s.y, s.z, ptr<int4>(out.coords));
    LATTICE_CUDA_LAUNCH_CHECK();
  } else {
    exclusive_sum_with_total(flag, pos, out.active_rows);  // writes a zero count
  }
  return out;
}

Array morton_codes(const Array& coords, const std::optional<Array>& rows, Int3 stride, const char* op) {
  const Device dev = coords.device();
  const std::int64_t n = coords.dim(0);
  Array out = Array::empty(Shape{n}, DType::i64, dev);
  if (n == 0) return out;
  // Tensor coordinates (rows given) already satisfy the key range, which is inside the Morton range.
  const bool check = !rows.has_value();
  k_morton<<<grid_for(n, k_threads), k_threads, 0, stream_of(dev)>>>(
      ptr<const std::int32_t>(coords), rows ? ptr<const std::int32_t>(*rows) : nullptr, n, stride.x, stride.y, stride.z,
      check, error_slot(dev.index), op_id(op), static_cast<unsigned long long*>(out.raw()));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

Array morton_order(const Array& codes) {
  const Device dev = codes.device();
  const std::int64_t n = codes.dim(0);
  Array perm = i32(n, dev);
  if (n == 0) return perm;
  if (n >= (std::int64_t{1} << 31)) {
    throw ValueError(lattice::detail::concat("[morton_order] argument 'x': ", n, " rows exceed int32 indices"));
  }
  const cudaStream_t stream = stream_of(dev);
  Array iota = i32(n, dev);
  Array keys_out = Array::empty(Shape{n}, DType::i64, dev);
  k_iota<<<grid_for(n, k_threads), k_threads, 0, stream>>>(n, ptr<std::int32_t>(iota));
  LATTICE_CUDA_LAUNCH_CHECK();
  const auto* kin = static_cast<const unsigned long long*>(codes.raw());
  auto* kout = static_cast<unsigned long long*>(keys_out.raw());
  // LSD radix sort over all 64 bits: stable, so equal codes keep row order.
  std::size_t temp = 0;
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, kin, kout, ptr<const std::int32_t>(iota),
                                                     ptr<std::int32_t>(perm), static_cast<int>(n), 0, 64, stream));
  Array scratch = Array::empty(Shape{static_cast<std::int64_t>(temp)}, DType::u8, dev);
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.raw(), temp, kin, kout, ptr<const std::int32_t>(iota),
                                                     ptr<std::int32_t>(perm), static_cast<int>(n), 0, 64, stream));
  return perm;
}

}  // namespace lattice::cuda
