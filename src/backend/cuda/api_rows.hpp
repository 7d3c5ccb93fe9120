// CUDA backend of the row-selection family (src/ops/rows.cpp). Plain C++ (no
// CUDA headers); backend/no_cuda/rows_stubs.cpp throws NotCompiledError for
// every function when the toolkit is absent.
//
// Every function enqueues on the device's current stream and returns without
// waiting. Each returns an upper-bound-capacity subset whose true row count is
// a device int32 scalar; values that live on the device (indices, scores,
// counts, the active row count) are checked by the kernels, which record a
// sticky error naming `op` (raised at the next host-facing call) and still
// produce a well-formed (possibly empty or partial) output.
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice::cuda {

// coords (capacity, 4) int32, feats (capacity, C); rows past *active_rows are
// zero. active_rows: int32 scalar on the device.
struct RowSubset {
  Array coords;
  Array feats;
  Array active_rows;
};

// Output row j = active row rows[j] (rows: (M,) int32/int64 on the device);
// capacity M. Out-of-range and repeated indices are sticky errors (their
// output rows are zero).
RowSubset prune_rows(const CoordinateSet& set, const Array& feats, const Array& rows, const char* op);

// Active rows with mask != 0 in row order (mask: (N,) uint8/int32/int64);
// capacity min(N, set capacity). With check_length, N must equal the device's
// active count (sticky error otherwise).
RowSubset mask_rows(const CoordinateSet& set, const Array& feats, const Array& mask, bool check_length, const char* op);

// Active rows inside the closed box [lo, hi] (physical), in row order; capacity = set capacity.
RowSubset crop_rows(const CoordinateSet& set, const Array& feats, Int3 lo, Int3 hi);

// Per batch item, the k_b = min(floor(counts[b] * rho), rows_b) rows with the
// largest first-channel score (see ops::topk_rows); counts: (B,) int32/int64 on
// the device. NaN scores, negative counts and batch indices >= B are sticky errors.
RowSubset topk_rows(const CoordinateSet& set, const Array& feats, const Array& counts, double rho, const char* op);

}  // namespace lattice::cuda
