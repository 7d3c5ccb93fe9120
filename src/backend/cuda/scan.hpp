// Device-wide scans and sorts (CUB) over host-known capacities, with device-side
// totals: nothing here synchronises the host.
#pragma once

#include "lattice/core/array.hpp"

namespace lattice::cuda {

// pos = exclusive prefix sum of values (int32, n entries); total (int32 scalar) = sum.
void exclusive_sum_with_total(const Array& values, Array& pos, Array& total);
// offsets (n + 1 entries) = exclusive prefix sum of counts (n entries), offsets[n] = total.
void exclusive_sum_inclusive_tail(const Array& counts, Array& offsets);
// Stable sort of (keys, values) pairs by key (int32 or uint32 keys, int32 values), ascending,
// considering key bits [begin_bit, end_bit). Outputs are new arrays.
void sort_pairs(const Array& keys, const Array& values, Array& keys_out, Array& values_out, int begin_bit = 0,
                int end_bit = 32);

}  // namespace lattice::cuda
