// Coordinate-set operations (SPEC §7, Appendix A "Morton codes").
//
// Result type: set operations return a *coordinate-only* SparseTensor -- a new
// key in the input's manager with 0 feature channels (the input's dtype) -- so
// results chain into other set ops and into reindex_sparse(x, result), which
// attaches features. Index-valued results are plain Arrays on the input's device.
// Every set result keeps first-seen order. On CUDA the output row count stays
// on the device (active_rows) and the new sets carry no batch_counts; on the
// CPU batch_counts are computed.
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// Unique coarse coordinates floor(v / (s*r)) * (s*r) per axis (batch kept), in
// first-seen order of x's rows; output stride s ⊙ r. Capacity: x's capacity.
SparseTensor downsample_coords(const SparseTensor& x, Int3 stride);

// a's rows, then b's rows absent from a, in b's order. Same stride, manager,
// device. Same-key inputs return a's set itself (same key), as does intersection.
SparseTensor union_coords(const SparseTensor& a, const SparseTensor& b);
// a's rows present in b, in a's order.
SparseTensor intersection_coords(const SparseTensor& a, const SparseTensor& b);

// For each query row (M, 4) int32 physical (batch, x, y, z) on x's device: x's
// row holding that coordinate, or -1 (also for coordinates that are not on x's
// lattice or outside the key range -- absent, not an error). (M,) int32.
Array lookup_coords(const SparseTensor& x, const Array& coords);
// (M,) uint8: 1 where lookup_coords(x, coords) >= 0.
Array contains_coords(const SparseTensor& x, const Array& coords);

// For each fine row, the row of `coarse` holding floor(fine / s_c) * s_c per
// axis (same batch), or -1. coarse's stride must be a multiple of fine's.
// (fine.capacity(),) int32; rows beyond fine's active rows are -1.
Array inverse_map(const SparseTensor& fine, const SparseTensor& coarse);

// 64-bit Morton codes of (N, 4) int32 physical coordinates at `stride`:
// batch in bits 54..63 (0 <= batch < 1024), below it 18 bits per axis of the
// logical coordinate (physical / stride) + 2^17, bit 3i = x's bit i, 3i+1 y's,
// 3i+2 z's. Returned as an int64 (N,) Array holding the *unsigned* 64-bit
// pattern (reinterpret as uint64 to compare). Coordinates not divisible by the
// stride or outside the range are a ValueError (host arrays: checked on the
// host; CUDA arrays: sticky device error).
Array morton_codes(const Array& coords, Int3 stride);
// Codes of x's rows, (capacity,); rows beyond the active rows get all-ones
// (the largest unsigned code).
Array morton_codes(const SparseTensor& x);
// (capacity,) int32 stable permutation of x's rows sorted by unsigned code
// (batch primary); the first rows() entries are the active rows, the rest the
// capacity rows in order.
Array morton_order(const SparseTensor& x);
// x's rows (coordinates and features) in Morton order, as a new key.
SparseTensor morton_sort_coords(const SparseTensor& x);

}  // namespace lattice::ops
