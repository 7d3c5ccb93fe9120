// Batching (SPEC §7 "Batching"): collate several sparse tensors into one
// batched tensor, and split a batched tensor back into its batch items.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

enum class DuplicateReduction : std::uint8_t { none, mean };

struct CollateParams {
  // none: rows are kept as they are (batch ids are disjoint across inputs, so
  // valid inputs never collide). mean: rows with the same coordinate are
  // merged, features averaged, in first-seen order.
  DuplicateReduction duplicate_reduction = DuplicateReduction::none;
};

// One batched tensor from `inputs` (all on one device and manager, same
// stride, channels and dtype). Input i's batch ids are offset by the total
// batch count of inputs 0..i-1, where an input's batch count is the length of
// its batch_counts (or max batch + 1; 1 for an empty input), so single-item
// inputs get batch ids 0, 1, 2, ... Rows keep input order. The result has a
// new key in the common manager and batch_counts set.
// Host-facing on CUDA (reads each input's row count and batch count).
SparseTensor sparse_collate(const std::vector<SparseTensor>& inputs, const CollateParams& params = {});

// Per batch item b in [0, B) the int32 row indices of x whose batch column is
// b, in row order. B = batch_size, or max batch + 1 (0 for an empty tensor);
// a batch_size below max batch + 1 is an error. Results live on x's device.
// Host-facing on CUDA.
std::vector<Array> batch_rows(const SparseTensor& x, std::optional<std::int64_t> batch_size = std::nullopt);
// Per batch item: its (n_b, 3) int32 x, y, z coordinates. Host-facing on CUDA.
std::vector<Array> decomposed_coordinates(const SparseTensor& x, std::optional<std::int64_t> batch_size = std::nullopt);
// Per batch item: its (n_b, C) features. Host-facing on CUDA.
std::vector<Array> decomposed_features(const SparseTensor& x, std::optional<std::int64_t> batch_size = std::nullopt);

}  // namespace lattice::ops
