// CPU pooling over relations (output CSR) and global pooling by batch column.
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

template <class T>
void pool_typed(const Relation& rel, const Array& feats, ops::PoolMode mode, Array& out) {
  using A = compute_t<T>;
  const std::int64_t n_out = rel.output()->rows();
  const std::int64_t c = feats.dim(1);
  const T* x = feats.data<T>();
  T* y = out.data<T>();
  const std::int32_t* offsets = rel.output_csr().row_offsets.data<std::int32_t>();
  const std::int32_t* in_rows = rel.in_rows().data<std::int32_t>();
#pragma omp parallel for schedule(dynamic, 256)
  for (std::int64_t o = 0; o < n_out; ++o) {
    const std::int32_t begin = offsets[o], end = offsets[o + 1];
    for (std::int64_t j = 0; j < c; ++j) {
      A acc = A{0};
      if (mode == ops::PoolMode::max) {
        // Ties go to the lowest input row (the row the gradient will use); NaN propagates.
        std::int32_t best_row = -1;
        bool nan = false;
        for (std::int32_t e = begin; e < end; ++e) {
          const std::int32_t i = in_rows[e];
          const A v = load(x[std::int64_t{i} * c + j]);
          if (std::isnan(v)) {
            nan = true;
          } else if (best_row < 0 || v > acc || (v == acc && i < best_row)) {
            acc = v;
            best_row = i;
          }
        }
        if (nan) acc = std::numeric_limits<A>::quiet_NaN();
      } else {
        for (std::int32_t e = begin; e < end; ++e) acc += load(x[std::int64_t{in_rows[e]} * c + j]);
        if (mode == ops::PoolMode::avg && end > begin) acc /= static_cast<A>(end - begin);
      }
      y[o * c + j] = store<T>(acc);
    }
  }
  std::fill(y + n_out * c, y + out.dim(0) * c, store<T>(0.0f));
}

template <class T>
void global_typed(const Array& coords, std::int64_t rows, const Array& feats, ops::PoolMode mode, Array& out,
                  const char* op) {
  using A = compute_t<T>;
  const std::int64_t b_count = out.dim(0), c = out.dim(1);
  const std::int32_t* co = coords.data<std::int32_t>();
  const T* x = feats.data<T>();
  std::vector<A> acc(static_cast<std::size_t>(b_count * c), A{0});
  std::vector<std::int64_t> count(static_cast<std::size_t>(b_count), 0);
  // Rows in order: a fixed summation order, so results are deterministic.
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t b = co[4 * r];
    A* dst = acc.data() + b * c;
    const T* src = x + r * c;
    const bool first = count[static_cast<std::size_t>(b)] == 0;
    for (std::int64_t j = 0; j < c; ++j) {
      const A v = load(src[j]);
      if (mode != ops::PoolMode::max) {
        dst[j] += v;
      } else if (first || std::isnan(v) || v > dst[j]) {
        if (!std::isnan(dst[j]) || first) dst[j] = v;  // NaN, once seen, stays
      }
    }
    ++count[static_cast<std::size_t>(b)];
  }
  T* y = out.data<T>();
  for (std::int64_t b = 0; b < b_count; ++b) {
    const std::int64_t n = count[static_cast<std::size_t>(b)];
    check(!(mode == ops::PoolMode::max && n == 0), op, "x", "batch item ", b,
          " has no rows; max over an empty batch item is undefined");
    for (std::int64_t j = 0; j < c; ++j) {
      A v = acc[static_cast<std::size_t>(b * c + j)];
      if (mode == ops::PoolMode::avg && n > 0) v /= static_cast<A>(n);
      y[b * c + j] = store<T>(v);
    }
  }
}

}  // namespace

void pool(const Relation& rel, const Array& feats, ops::PoolMode mode, Array& out) {
  visit_float(feats.dtype(), [&]<class T>() { pool_typed<T>(rel, feats, mode, out); });
}

void global_pool(const Array& coords, std::int64_t rows, const Array& feats, ops::PoolMode mode, Array& out,
                 const char* op) {
  visit_float(feats.dtype(), [&]<class T>() { global_typed<T>(coords, rows, feats, mode, out, op); });
}

}  // namespace lattice::cpu
