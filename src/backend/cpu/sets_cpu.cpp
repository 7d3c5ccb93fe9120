// CPU sparse algebra and coordinate sets: hash lookups over logical keys
// (coord_hash.hpp), first-seen order by scanning rows in order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

using lattice::detail::floor_div;

Array int_array(const std::vector<std::int32_t>& v) {
  return Array::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, Device::cpu());
}

SetParts make_set(const std::vector<std::int32_t>& coords) {
  const std::int64_t rows = static_cast<std::int64_t>(coords.size() / 4);
  Array c = Array::from_vector(coords, Shape{rows, 4}, Device::cpu());
  Array counts = batch_counts_of(c, rows);
  return {std::move(c), rows, std::move(counts)};
}

// Row of `table` holding the physical coordinate r (exact; -1 when absent or off the lattice).
std::int32_t find_physical(const CoordHashTable& table, const std::int32_t* r, Int3 s) {
  if (r[1] % s.x != 0 || r[2] % s.y != 0 || r[3] % s.z != 0) return -1;
  return lookup(table, r[0], r[1] / s.x, r[2] / s.y, r[3] / s.z);
}

// NaN-propagating max/min, the same expression as the CUDA kernel (bitwise agreement).
template <class A>
A apply(ops::BinaryOp op, A a, A b) {
  switch (op) {
    case ops::BinaryOp::add:
      return a + b;
    case ops::BinaryOp::sub:
      return a - b;
    case ops::BinaryOp::mul:
      return a * b;
    case ops::BinaryOp::maximum:
      return std::isnan(a) ? a : (std::isnan(b) ? b : (a > b ? a : b));
    case ops::BinaryOp::minimum:
      return std::isnan(a) ? a : (std::isnan(b) ? b : (a < b ? a : b));
  }
  return a;
}

}  // namespace

Array batch_counts_of(const Array& coords, std::int64_t rows) {
  const std::int32_t* c = coords.data<std::int32_t>();
  std::vector<std::int32_t> counts;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto b = static_cast<std::size_t>(c[4 * r]);
    if (b >= counts.size()) counts.resize(b + 1, 0);
    ++counts[b];
  }
  return int_array(counts);
}

AlignParts align(const CoordinateSet& lhs, const CoordinateSet& rhs, ops::Join join, const char* op) {
  const Int3 s = lhs.stride();
  const std::int64_t n_l = lhs.rows(), n_r = rhs.rows();
  const std::int32_t* cl = lhs.coords().data<std::int32_t>();
  const std::int32_t* cr = rhs.coords().data<std::int32_t>();
  const CoordHashTable& t_r = coord_index(rhs, op);
  std::vector<std::int32_t> match(static_cast<std::size_t>(n_l));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n_l; ++i) match[static_cast<std::size_t>(i)] = find_physical(t_r, cl + 4 * i, s);

  AlignParts out;
  std::vector<std::int32_t> l_rows, r_rows, coords;
  if (join == ops::Join::left) {
    // The output is lhs's set: one entry per lhs capacity row.
    l_rows.assign(static_cast<std::size_t>(lhs.capacity()), -1);
    r_rows.assign(static_cast<std::size_t>(lhs.capacity()), -1);
    for (std::int64_t i = 0; i < n_l; ++i) {
      l_rows[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
      r_rows[static_cast<std::size_t>(i)] = match[static_cast<std::size_t>(i)];
    }
    out.lhs_rows = int_array(l_rows);
    out.rhs_rows = int_array(r_rows);
    return out;
  }
  for (std::int64_t i = 0; i < n_l; ++i) {
    const std::int32_t m = match[static_cast<std::size_t>(i)];
    if (join == ops::Join::inner && m < 0) continue;
    l_rows.push_back(static_cast<std::int32_t>(i));
    r_rows.push_back(m);
    coords.insert(coords.end(), cl + 4 * i, cl + 4 * i + 4);
  }
  if (join == ops::Join::outer) {
    const CoordHashTable& t_l = coord_index(lhs, op);
    for (std::int64_t j = 0; j < n_r; ++j) {
      if (find_physical(t_l, cr + 4 * j, s) >= 0) continue;
      l_rows.push_back(-1);
      r_rows.push_back(static_cast<std::int32_t>(j));
      coords.insert(coords.end(), cr + 4 * j, cr + 4 * j + 4);
    }
  }
  out.set = make_set(coords);
  out.lhs_rows = int_array(l_rows);
  out.rhs_rows = int_array(r_rows);
  return out;
}

void binary_rows(const Array& lhs, const Array& rhs, const std::optional<Array>& lhs_rows,
                 const std::optional<Array>& rhs_rows, std::int64_t rows, ops::BinaryOp op, double lhs_fill,
                 double rhs_fill, Array& out) {
  visit_float(out.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = out.dim(1);
    const T* a = lhs.data<T>();
    const T* b = rhs.data<T>();
    T* y = out.data<T>();
    const std::int32_t* lr = lhs_rows ? lhs_rows->data<std::int32_t>() : nullptr;
    const std::int32_t* rr = rhs_rows ? rhs_rows->data<std::int32_t>() : nullptr;
    // The fills in the compute type: exact values, never derived from a row.
    const A fa = static_cast<A>(lhs_fill), fb = static_cast<A>(rhs_fill);
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t i = lr ? lr[r] : r;
      const std::int64_t k = rr ? rr[r] : r;
      for (std::int64_t j = 0; j < c; ++j) {
        const A va = i >= 0 ? load(a[i * c + j]) : fa;
        const A vb = k >= 0 ? load(b[k * c + j]) : fb;
        y[r * c + j] = store<T>(apply(op, va, vb));
      }
    }
    std::fill(y + rows * c, y + out.dim(0) * c, store<T>(0.0f));
  });
}

void gather_rows(const Array& x, const Array& rows, double fill, Array& out) {
  visit_float(out.dtype(), [&]<class T>() {
    const std::int64_t c = out.dim(1), n = out.dim(0);
    const T* src = x.data<T>();
    const std::int32_t* r = rows.data<std::int32_t>();
    T* y = out.data<T>();
    const T f = store<T>(fill);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < c; ++j) y[i * c + j] = r[i] >= 0 ? src[std::int64_t{r[i]} * c + j] : f;
    }
  });
}

void permute_rows(const Array& src, const Array& perm, Array& out) {
  const std::size_t row = out.row_bytes();
  const auto* s = static_cast<const unsigned char*>(src.raw());
  auto* d = static_cast<unsigned char*>(out.raw());
  const std::int32_t* p = perm.data<std::int32_t>();
  for (std::int64_t i = 0; i < out.dim(0); ++i) {
    if (row > 0) std::memcpy(d + static_cast<std::size_t>(i) * row, s + static_cast<std::size_t>(p[i]) * row, row);
  }
}

Array match_rows(const CoordinateSet& table, const CoordinateSet& query, const char* op) {
  const Int3 s = table.stride();
  const CoordHashTable& t = coord_index(table, op);
  const std::int32_t* c = query.coords().data<std::int32_t>();
  std::vector<std::int32_t> out(static_cast<std::size_t>(query.capacity()), -1);
  const std::int64_t n = query.rows();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t* r = c + 4 * i;
    out[static_cast<std::size_t>(i)] =
        lookup(t, r[0], floor_div(r[1], s.x), floor_div(r[2], s.y), floor_div(r[3], s.z));
  }
  return int_array(out);
}

Array lookup(const CoordinateSet& set, const Array& coords, const char* op) {
  const CoordHashTable& t = coord_index(set, op);
  const std::int32_t* c = coords.data<std::int32_t>();
  std::vector<std::int32_t> out(static_cast<std::size_t>(coords.dim(0)));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < coords.dim(0); ++i) {
    out[static_cast<std::size_t>(i)] = find_physical(t, c + 4 * i, set.stride());
  }
  return int_array(out);
}

SetParts downsample(const CoordinateSet& set, Int3 out_stride, const char* op) {
  const std::int64_t n = set.rows();
  const std::int32_t* c = set.coords().data<std::int32_t>();
  CoordHashTable seen(n);
  std::vector<std::int32_t> coords;
  std::int32_t next = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t* r = c + 4 * i;
    const std::int32_t l[3] = {floor_div(r[1], out_stride.x), floor_div(r[2], out_stride.y),
                               floor_div(r[3], out_stride.z)};
    // Coarse logical coordinates are no larger than the fine ones: they fit the key.
    if (!seen.insert(lattice::detail::pack_key(r[0], l[0], l[1], l[2]), next).second) continue;
    ++next;
    coords.insert(coords.end(), {r[0], l[0] * out_stride.x, l[1] * out_stride.y, l[2] * out_stride.z});
  }
  (void)op;
  return make_set(coords);
}

Array morton_codes(const Array& coords, std::int64_t rows, Int3 stride) {
  const std::int64_t n = coords.dim(0);
  Array out = Array::empty(Shape{n}, DType::i64, Device::cpu());
  const std::int32_t* c = coords.data<std::int32_t>();
  auto* y = static_cast<std::uint64_t*>(out.raw());
  for (std::int64_t i = 0; i < n; ++i) {
    if (i >= rows) {
      y[i] = ~std::uint64_t{0};
      continue;
    }
    const std::int32_t* r = c + 4 * i;
    std::uint64_t code = static_cast<std::uint64_t>(r[0]) << 54;
    for (int a = 0; a < 3; ++a) {
      const auto u = static_cast<std::uint64_t>(r[a + 1] / stride[a] + (1 << 17));
      for (int bit = 0; bit < 18; ++bit) code |= ((u >> bit) & 1u) << (3 * bit + a);
    }
    y[i] = code;
  }
  return out;
}

Array morton_order(const Array& codes) {
  const auto* k = static_cast<const std::uint64_t*>(codes.raw());
  std::vector<std::int32_t> perm(static_cast<std::size_t>(codes.dim(0)));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](std::int32_t a, std::int32_t b) { return k[a] < k[b]; });
  return int_array(perm);
}

}  // namespace lattice::cpu
