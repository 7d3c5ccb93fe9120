// CPU row selection: plain serial loops, also the reference for the CUDA
// backend (backend/cuda/rows.cu), which must pick the same rows in the same order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/api_rows.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

// Scores promoted to double: every float dtype converts exactly, so ordering
// by the promoted value is ordering by the stored value.
std::vector<double> first_channel(const Array& feats, std::int64_t n) {
  std::vector<double> s(static_cast<std::size_t>(n));
  const std::int64_t c = feats.dim(1);
  visit_float(feats.dtype(), [&]<class T>() {
    const T* f = feats.data<T>();
    for (std::int64_t r = 0; r < n; ++r) s[static_cast<std::size_t>(r)] = static_cast<double>(load(f[r * c]));
  });
  return s;
}

}  // namespace

RowSubset gather_rows(const Array& coords, const Array& feats, const std::vector<std::int64_t>& rows) {
  const auto m = static_cast<std::int64_t>(rows.size());
  RowSubset out;
  out.coords = Array::empty(Shape{m, 4}, DType::i32, Device::cpu());
  out.feats = Array::empty(Shape{m, feats.dim(1)}, feats.dtype(), Device::cpu());
  const auto* src_c = coords.data<std::int32_t>();
  auto* dst_c = out.coords.data<std::int32_t>();
  const auto* src_f = static_cast<const unsigned char*>(feats.raw());
  auto* dst_f = static_cast<unsigned char*>(out.feats.raw());
  const std::size_t row_bytes = feats.row_bytes();
  std::vector<std::int32_t> counts;
  for (std::int64_t j = 0; j < m; ++j) {
    const std::int64_t r = rows[static_cast<std::size_t>(j)];
    std::memcpy(dst_c + 4 * j, src_c + 4 * r, 4 * sizeof(std::int32_t));
    if (row_bytes > 0) std::memcpy(dst_f + j * row_bytes, src_f + r * row_bytes, row_bytes);
    const auto b = static_cast<std::size_t>(src_c[4 * r]);
    if (b >= counts.size()) counts.resize(b + 1, 0);
    ++counts[b];
  }
  out.batch_counts = Array::from_vector(counts, Shape{static_cast<std::int64_t>(counts.size())}, Device::cpu());
  return out;
}

std::vector<std::int64_t> integer_values(const Array& a) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(a.numel()));
  visit_dtype(a.dtype(), [&]<class T>() {
    if constexpr (std::is_integral_v<T>) {
      const T* p = a.data<T>();
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>(p[i]);
    } else {
      throw TypeError(detail::concat("[cpu] expected an integer dtype, got ", dtype_name(a.dtype())));
    }
  });
  return v;
}

std::vector<std::int64_t> mask_rows(const Array& mask, std::int64_t n) {
  std::vector<std::int64_t> rows;
  visit_dtype(mask.dtype(), [&]<class T>() {
    if constexpr (std::is_integral_v<T>) {
      const T* m = mask.data<T>();
      for (std::int64_t r = 0; r < n; ++r)
        if (m[r] != T{0}) rows.push_back(r);
    } else {
      throw TypeError(detail::concat("[cpu] expected an integer mask, got ", dtype_name(mask.dtype())));
    }
  });
  return rows;
}

std::vector<std::int64_t> crop_rows(const Array& coords, std::int64_t n, Int3 lo, Int3 hi) {
  std::vector<std::int64_t> rows;
  const auto* c = coords.data<std::int32_t>();
  for (std::int64_t r = 0; r < n; ++r) {
    bool inside = true;
    for (int a = 0; a < 3; ++a) inside = inside && c[4 * r + 1 + a] >= lo[a] && c[4 * r + 1 + a] <= hi[a];
    if (inside) rows.push_back(r);
  }
  return rows;
}

std::int64_t first_nan_score(const Array& feats, std::int64_t n) {
  const std::vector<double> s = first_channel(feats, n);
  for (std::int64_t r = 0; r < n; ++r)
    if (std::isnan(s[static_cast<std::size_t>(r)])) return r;
  return -1;
}

std::vector<std::int64_t> topk_rows(const Array& coords, const Array& feats, std::int64_t n,
                                    const std::vector<std::int64_t>& k) {
  const std::vector<double> score = first_channel(feats, n);
  const auto* c = coords.data<std::int32_t>();
  // Rows of each batch item in row order.
  std::vector<std::vector<std::int64_t>> members(k.size());
  for (std::int64_t r = 0; r < n; ++r) members[static_cast<std::size_t>(c[4 * r])].push_back(r);
  std::vector<std::int64_t> out;
  for (std::size_t b = 0; b < members.size(); ++b) {
    auto& m = members[b];
    // Stable: equal scores (-0 == +0 included) keep row order, so ties go to the lower row.
    std::stable_sort(m.begin(), m.end(), [&](std::int64_t p, std::int64_t q) {
      return score[static_cast<std::size_t>(p)] > score[static_cast<std::size_t>(q)];
    });
    out.insert(out.end(), m.begin(), m.begin() + k[b]);
  }
  return out;
}

}  // namespace lattice::cpu
