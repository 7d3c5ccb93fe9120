// CPU backend of the row-selection family (src/ops/rows.cpp). Everything here
// trusts the front end's checks: row lists index active rows, counts are valid.
#pragma once

#include <cstdint>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice::cpu {

// A host row subset: exact-sized coords (M, 4), feats (M, C) and the rows per
// batch item recomputed from the batch column (B = largest batch + 1).
struct RowSubset {
  Array coords;
  Array feats;
  Array batch_counts;
};

// Output row j = input row rows[j] (coordinates and features copied bitwise).
RowSubset gather_rows(const Array& coords, const Array& feats, const std::vector<std::int64_t>& rows);

// Integer entries (int32 / int64 / uint8) of a host vector as int64.
std::vector<std::int64_t> integer_values(const Array& a);

// Rows r < n with mask[r] != 0 (mask: uint8 / int32 / int64), in row order.
std::vector<std::int64_t> mask_rows(const Array& mask, std::int64_t n);

// Rows r < n whose physical x, y, z lie in [lo, hi] (closed), in row order.
std::vector<std::int64_t> crop_rows(const Array& coords, std::int64_t n, Int3 lo, Int3 hi);

// The lowest row r < n whose first-channel feature is NaN, or -1.
std::int64_t first_nan_score(const Array& feats, std::int64_t n);

// Per batch item b (ascending), the k[b] rows with the largest first-channel
// score in descending order, ties to the lower row. k has one entry per batch
// index that occurs (k[b] <= rows of b); scores are not NaN.
std::vector<std::int64_t> topk_rows(const Array& coords, const Array& feats, std::int64_t n,
                                    const std::vector<std::int64_t>& k);

}  // namespace lattice::cpu
