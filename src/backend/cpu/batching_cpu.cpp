// CPU batching: collate (with optional duplicate merging) and grouping rows by
// batch id. Serial and in row order, so results are deterministic and match
// the CUDA route bit for bit (same additions in the same order).
#include <vector>

#include "backend/cpu/api_points.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/dispatch.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cpu {

namespace {

// Sums rows of `feats` with the same `group` (in row order), then scales each
// group by 1 / count (as voxelize's mean: value * (1 / count)).
template <class T>
void mean_rows(const std::vector<const Array*>& parts, const std::vector<std::int64_t>& part_rows,
               const std::vector<std::int32_t>& group, const std::vector<std::int32_t>& counts, std::int64_t c,
               Array& out) {
  using A = compute_t<T>;
  const std::size_t m = counts.size();
  std::vector<A> acc(m * static_cast<std::size_t>(c), A{0});
  std::size_t row = 0;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const T* x = parts[p]->data<T>();
    for (std::int64_t i = 0; i < part_rows[p]; ++i, ++row) {
      A* dst = acc.data() + static_cast<std::size_t>(group[row]) * static_cast<std::size_t>(c);
      for (std::int64_t j = 0; j < c; ++j) dst[j] += static_cast<A>(load(x[i * c + j]));
    }
  }
  T* y = out.data<T>();
  for (std::size_t v = 0; v < m; ++v) {
    const A scale = A{1} / static_cast<A>(counts[v]);
    for (std::int64_t j = 0; j < c; ++j) {
      y[static_cast<std::int64_t>(v) * c + j] = store<T>(acc[v * static_cast<std::size_t>(c) + j] * scale);
    }
  }
}

}  // namespace

CollateResult collate(const std::vector<SparseTensor>& inputs, const std::vector<std::int32_t>& batch_offsets,
                      bool mean) {
  const Int3 s = inputs.front().stride();
  const std::int64_t c = inputs.front().channels();
  const DType dtype = inputs.front().dtype();
  std::vector<std::int64_t> part_rows;
  std::int64_t total = 0;
  for (const SparseTensor& t : inputs) {
    part_rows.push_back(t.rows());
    total += part_rows.back();
  }
  std::vector<std::int32_t> coords;
  coords.reserve(static_cast<std::size_t>(4 * total));
  for (std::size_t p = 0; p < inputs.size(); ++p) {
    const std::int32_t* src = inputs[p].coords().data<std::int32_t>();
    for (std::int64_t i = 0; i < part_rows[p]; ++i) {
      coords.insert(coords.end(), {src[4 * i] + batch_offsets[p], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]});
    }
  }
  CollateResult r;
  if (!mean) {
    r.rows = total;
    r.coords = Array::from_vector(coords, Shape{total, 4}, Device::cpu());
    r.feats = Array::empty(Shape{total, c}, dtype, Device::cpu());
    std::int64_t at = 0;
    for (std::size_t p = 0; p < inputs.size(); ++p) {
      const std::size_t bytes = static_cast<std::size_t>(part_rows[p]) * r.feats.row_bytes();
      if (bytes > 0)
        copy_bytes(r.feats.rows(at, at + part_rows[p]).raw(), Device::cpu(), inputs[p].feats().raw(), Device::cpu(),
                   bytes);
      at += part_rows[p];
    }
    return r;
  }
  // mean: first-seen unique coordinates (keys are logical, as every index).
  CoordHashTable table(total);
  std::vector<std::int32_t> group(static_cast<std::size_t>(total));
  std::vector<std::int32_t> unique;
  std::vector<std::int32_t> counts;
  for (std::int64_t i = 0; i < total; ++i) {
    const std::int32_t* q = coords.data() + 4 * i;
    const auto next = static_cast<std::int32_t>(counts.size());
    auto [row, inserted] = table.insert(detail::pack_key(q[0], q[1] / s.x, q[2] / s.y, q[3] / s.z), next);
    if (inserted) {
      unique.insert(unique.end(), q, q + 4);
      counts.push_back(0);
    }
    ++counts[static_cast<std::size_t>(row)];
    group[static_cast<std::size_t>(i)] = row;
  }
  const auto m = static_cast<std::int64_t>(counts.size());
  r.rows = m;
  r.coords = Array::from_vector(unique, Shape{m, 4}, Device::cpu());
  r.feats = Array::empty(Shape{m, c}, dtype, Device::cpu());
  std::vector<const Array*> parts;
  for (const SparseTensor& t : inputs) parts.push_back(&t.feats());
  visit_float(dtype, [&]<class T>() { mean_rows<T>(parts, part_rows, group, counts, c, r.feats); });
  return r;
}

std::int32_t max_batch(const Array& coords, std::int64_t rows) {
  const std::int32_t* q = coords.data<std::int32_t>();
  std::int32_t best = -1;
  for (std::int64_t i = 0; i < rows; ++i) best = std::max(best, q[4 * i]);
  return best;
}

std::vector<std::vector<std::int32_t>> batch_rows(const Array& coords, std::int64_t rows, std::int64_t batch_size) {
  const std::int32_t* q = coords.data<std::int32_t>();
  std::vector<std::vector<std::int32_t>> groups(static_cast<std::size_t>(batch_size));
  for (std::int64_t i = 0; i < rows; ++i)
    groups[static_cast<std::size_t>(q[4 * i])].push_back(static_cast<std::int32_t>(i));
  return groups;
}

}  // namespace lattice::cpu
