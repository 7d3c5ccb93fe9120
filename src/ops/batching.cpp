// Batching front ends (SPEC §7 "Batching"): sparse_collate and the batch
// decomposition. Arguments are checked here, before anything is built.
#include "lattice/ops/batching.hpp"

#include <algorithm>

#include "backend/cpu/api.hpp"
#include "backend/cpu/api_points.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cuda/api.hpp"
#include "backend/cuda/api_points.hpp"
#include "ops/common.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {

constexpr const char* k_collate = "sparse_collate";
// Largest batch count a key holds (batch ids 0 .. k_batch_max).
constexpr std::int64_t k_max_batches = lattice::detail::k_batch_max + 1;

// Host-facing on CUDA: the number of batch items of x (length of its
// batch_counts, else max batch + 1), at least 1 so that a single-item input
// always takes one batch id.
std::int64_t batch_count(const SparseTensor& x) {
  if (x.batch_counts()) return std::max<std::int64_t>(1, x.batch_counts()->dim(0));
  const std::int64_t rows = x.rows();
  const std::int32_t top = x.device().is_cpu() ? cpu::max_batch(x.coords(), rows) : cuda::max_batch(x.coords(), rows);
  return std::max<std::int64_t>(1, std::int64_t{top} + 1);
}

// Host-facing: B for the decomposition, checked against x's batch column.
std::int64_t decomposition_size(const SparseTensor& x, std::optional<std::int64_t> batch_size, const char* op) {
  detail::check_input(x, op);
  if (batch_size) {
    check(*batch_size >= 0 && *batch_size <= k_max_batches, op, "batch_size", "must be in [0, ", k_max_batches,
          "], got ", *batch_size);
  }
  const std::int64_t rows = x.rows();
  const std::int32_t top = x.device().is_cpu() ? cpu::max_batch(x.coords(), rows) : cuda::max_batch(x.coords(), rows);
  if (!batch_size) return std::int64_t{top} + 1;
  check(top < *batch_size, op, "batch_size", "x has rows of batch item ", top, ", not below batch_size ", *batch_size);
  return *batch_size;
}

// Grouped row indices: one array per batch item, on x's device.
std::vector<Array> grouped_rows(const SparseTensor& x, std::int64_t b, const char* op) {
  std::vector<Array> out;
  const Device device = x.device();
  if (device.is_cpu()) {
    for (auto& g : cpu::batch_rows(x.coords(), x.rows(), b)) {
      const auto n = static_cast<std::int64_t>(g.size());
      out.push_back(Array::from_vector(g, Shape{n}, device));
    }
    return out;
  }
  auto [rows, sizes] = cuda::batch_rows(x.coords(), x.rows(), b, op);
  std::int64_t at = 0;
  for (std::int64_t n : sizes) {
    out.push_back(rows.rows(at, at + n).clone());
    at += n;
  }
  return out;
}

}  // namespace

SparseTensor sparse_collate(const std::vector<SparseTensor>& inputs, const CollateParams& params) {
  constexpr const char* op = k_collate;
  check(!inputs.empty(), op, "inputs", "must hold at least one tensor");
  check(
      params.duplicate_reduction == DuplicateReduction::none || params.duplicate_reduction == DuplicateReduction::mean,
      op, "duplicate_reduction", "unknown duplicate reduction ", static_cast<int>(params.duplicate_reduction),
      " (expected none or mean)");
  const SparseTensor& first = inputs.front();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const SparseTensor& t = inputs[i];
    check(t.defined(), op, "inputs", "entry ", i, " is an undefined tensor");
    detail::check_input(t, op, "inputs");
    check<DeviceError>(t.device() == first.device(), op, "inputs", "entry ", i, " is on ", t.device().str(),
                       " but entry 0 is on ", first.device().str());
    check(t.manager() == first.manager(), op, "inputs", "entry ", i,
          " belongs to a different coordinate manager than entry 0 (mixed managers)");
    check(t.stride() == first.stride(), op, "inputs", "entry ", i, " has stride ", t.stride().str(),
          " but entry 0 has ", first.stride().str());
    check(t.channels() == first.channels(), op, "inputs", "entry ", i, " has ", t.channels(),
          " channels but entry 0 has ", first.channels());
    check<TypeError>(t.dtype() == first.dtype(), op, "inputs", "entry ", i, " is ", dtype_name(t.dtype()),
                     " but entry 0 is ", dtype_name(first.dtype()));
  }
  // Batch offsets (host-facing on CUDA: batch and row counts are read once).
  std::vector<std::int32_t> offsets;
  std::int64_t total_batches = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    offsets.push_back(static_cast<std::int32_t>(total_batches));
    total_batches += batch_count(inputs[i]);
    check(total_batches <= k_max_batches, op, "inputs", "the collated batch count ", total_batches, " (through entry ",
          i, ") exceeds the key's ", k_max_batches, " batch items");
  }
  const bool mean = params.duplicate_reduction == DuplicateReduction::mean;
  const Device device = first.device();
  const auto& manager = first.manager();
  if (device.is_cpu()) {
    cpu::CollateResult r = cpu::collate(inputs, offsets, mean);
    // batch_counts over every collated item (trailing empty items included).
    Array counts = cpu::batch_counts(r.coords, r.rows);
    std::vector<std::int32_t> bc(static_cast<std::size_t>(total_batches), 0);
    const std::int32_t* cp = counts.data<std::int32_t>();
    for (std::int64_t b = 0; b < counts.dim(0); ++b) bc[static_cast<std::size_t>(b)] = cp[b];
    auto set = manager->insert(std::move(r.coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(r.rows)),
                               first.stride(), Array::from_vector(bc, Shape{total_batches}), r.rows);
    // Valid inputs give unique rows; building the index checks it (and is reused).
    if (!mean) cpu::coord_index(*set, op);
    return SparseTensor(set, manager, std::move(r.feats));
  }
  std::vector<std::int64_t> rows;
  for (const SparseTensor& t : inputs) rows.push_back(t.rows());
  cuda::CollateResult r = cuda::collate(inputs, rows, offsets, static_cast<std::int32_t>(total_batches), mean);
  auto set = manager->insert(std::move(r.coords), std::move(r.active_rows), first.stride(), std::move(r.batch_counts));
  // Duplicates among valid inputs cannot occur; a sticky error reports them if they do.
  if (!mean) cuda::check_unique(*set, op);
  return SparseTensor(set, manager, std::move(r.feats));
}

std::vector<Array> batch_rows(const SparseTensor& x, std::optional<std::int64_t> batch_size) {
  constexpr const char* op = "batch_rows";
  const std::int64_t b = decomposition_size(x, batch_size, op);
  return grouped_rows(x, b, op);
}

std::vector<Array> decomposed_coordinates(const SparseTensor& x, std::optional<std::int64_t> batch_size) {
  constexpr const char* op = "decomposed_coordinates";
  const std::int64_t b = decomposition_size(x, batch_size, op);
  std::vector<Array> out;
  for (const Array& rows : grouped_rows(x, b, op)) {
    const std::int64_t n = rows.dim(0);
    if (x.device().is_cpu()) {
      Array xyz = Array::empty(Shape{n, 3}, DType::i32, x.device());
      const std::int32_t* r = rows.data<std::int32_t>();
      const std::int32_t* q = x.coords().data<std::int32_t>();
      std::int32_t* o = xyz.data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        for (int a = 0; a < 3; ++a) o[3 * i + a] = q[4 * std::int64_t{r[i]} + 1 + a];
      }
      out.push_back(std::move(xyz));
    } else {
      out.push_back(cuda::gather_xyz(x.coords(), rows));
    }
  }
  return out;
}

std::vector<Array> decomposed_features(const SparseTensor& x, std::optional<std::int64_t> batch_size) {
  constexpr const char* op = "decomposed_features";
  const std::int64_t b = decomposition_size(x, batch_size, op);
  std::vector<Array> out;
  for (const Array& rows : grouped_rows(x, b, op)) {
    const std::int64_t n = rows.dim(0);
    if (x.device().is_cpu()) {
      Array f = Array::empty(Shape{n, x.channels()}, x.dtype(), x.device());
      const std::int32_t* r = rows.data<std::int32_t>();
      const std::size_t rb = f.row_bytes();
      for (std::int64_t i = 0; i < n; ++i) {
        if (rb > 0)
          copy_bytes(f.rows(i, i + 1).raw(), f.device(), x.feats().rows(r[i], r[i] + 1).raw(), f.device(), rb);
      }
      out.push_back(std::move(f));
    } else {
      out.push_back(cuda::gather_feature_rows(x.feats(), rows));
    }
  }
  return out;
}

}  // namespace lattice::ops
