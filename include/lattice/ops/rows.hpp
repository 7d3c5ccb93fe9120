// Row selection (SPEC §7, Appendix A "Row selection").
//
// prune, prune_mask, crop and topk_rows return a subset of x's active rows:
// the output's coordinates are a NEW key in x's manager (same stride), its
// features the matching rows (bitwise copies), in the order stated per op.
// On the CPU the output is exact-sized and carries batch_counts recomputed
// from the batch column. On CUDA the output count stays on the device: the
// capacity is an upper bound (stated per op), active_rows the true count, and
// batch_counts are absent (recomputing them on the host would need a wait).
// Values already on the GPU (row indices, scores, counts) are checked by the
// kernels and raise at the next host-facing call (sticky device errors).
//
// replace_feature keeps x's coordinate key (SPEC §1: feature ops keep
// identity), so the relation cache keeps serving the result.
#pragma once

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// rows: (M,) int32 or int64 on x's device; output row j is x's row rows[j].
// Every index must lie in [0, x.rows()) and appear once (a repeated row would
// repeat its coordinate). CUDA capacity: M.
SparseTensor prune(const SparseTensor& x, const Array& rows);

// mask: (N,) uint8, int32 or int64 on x's device; keeps the active rows with
// mask != 0, in row order. N must equal x.rows(); x.capacity() is accepted as
// well (entries at and beyond the active rows are ignored). On CUDA, when the
// host does not know the active count, the length check runs on the device.
// CUDA capacity: min(N, x.capacity()).
SparseTensor prune_mask(const SparseTensor& x, const Array& mask);

// Keeps the rows whose physical x, y, z lie in the closed box
// [min_coord, max_coord] (every batch item), in row order; min <= max per axis.
// CUDA capacity: x.capacity().
SparseTensor crop(const SparseTensor& x, Int3 min_coord, Int3 max_coord);

// Per batch item b (grouped by the batch column, rows need not be contiguous):
// k_b = min(floor(counts[b] * rho), rows_b), computed in float64; keeps the k_b
// rows with the largest first-channel score. Output: batch items in ascending
// batch order, within one in descending score order, ties (and -0 vs +0) to
// the lower row. counts: (B,) int32/int64, >= 0, on the host or x's device;
// every batch index present must be < B. rho finite and >= 0. A NaN score of
// an active row is an error. CUDA capacity: x.capacity().
SparseTensor topk_rows(const SparseTensor& x, const Array& counts, double rho);

// Same coordinates (same key), new features: feats (R, C') of any floating
// dtype on x's device with R >= x.rows(). R == x.capacity() shares feats;
// otherwise the first min(R, capacity) rows are copied into a capacity-sized
// array (rows past R zero). When R < x.capacity() on CUDA the check reads the
// active count (host-facing unless the host already knows it).
SparseTensor replace_feature(const SparseTensor& x, const Array& feats);

}  // namespace lattice::ops
