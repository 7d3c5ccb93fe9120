// Sparse algebra between tensors with different coordinate sets (SPEC §7,
// Appendix A "Sparse algebra"), and the row maps it is built from.
//
// Tensors with the same key are row-aligned: the fast path combines them row by
// row and ignores join and fills. Otherwise rows are matched by coordinate value
// (batch included); both sides must have the same stride, manager, device,
// dtype and channel count. A side that has no row for an output coordinate
// contributes its fill value exactly (never `row * 0`, which turns inf into NaN).
//
// Output order: inner -- the left rows that match, in left order; left -- all
// left rows; outer -- all left rows, then the right-only rows in right order.
// Output identity: the left join reuses the left key (its rows are the left
// rows); inner and outer joins register a new key in the same manager.
// batch_counts: computed on the CPU; on CUDA new sets carry none (computing
// them would need the batch count on the host), the left join keeps the left's.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// maximum / minimum propagate NaN from either side (as torch.maximum).
enum class BinaryOp : std::uint8_t { add, sub, mul, maximum, minimum };
enum class Join : std::uint8_t { inner, outer, left };

std::string_view binary_op_name(BinaryOp op);
std::string_view join_name(Join join);
// The default join of `op` (SPEC §7): add/sub outer, mul/maximum/minimum inner.
Join default_join(BinaryOp op);

struct BinaryParams {
  std::optional<Join> join;  // default_join(op) when absent
  double lhs_fill = 0.0;     // value of lhs where lhs has no row
  double rhs_fill = 0.0;     // value of rhs where rhs has no row
};

// op(lhs, rhs) over the join of the two coordinate sets. Features (capacity, C)
// in the input dtype; 16-bit types compute in float32.
SparseTensor sparse_binary(BinaryOp op, const SparseTensor& lhs, const SparseTensor& rhs,
                           const BinaryParams& params = {});

// The row map of a join.
//  coords:   the output coordinate set as a coordinate-only tensor (0 feature
//            channels, lhs's dtype); same key as lhs for left joins and same-key inputs
//  lhs_rows: (coords.capacity(),) int32 row of lhs for each output row, -1 = absent
//  rhs_rows: (coords.capacity(),) int32 row of rhs, -1 = absent
// Rows at and beyond the output's active rows are -1 in both maps. On CUDA the
// active count stays on the device (capacity lhs + rhs for outer joins).
struct AlignedRows {
  SparseTensor coords;
  Array lhs_rows;
  Array rhs_rows;
};
AlignedRows align_sparse(const SparseTensor& lhs, const SparseTensor& rhs, Join join);

// (len(rows), C) in x's dtype: row i is x's row rows[i], or `fill` where
// rows[i] == -1. rows: 1-D int32 on x's device with entries in [-1, x.rows()).
// Out-of-range entries are a ValueError (checked on the host for CPU arrays; on
// CUDA they are recorded as a sticky device error and the row gets `fill`).
Array gather_aligned_features(const SparseTensor& x, const Array& rows, double fill = 0.0);

// A tensor on target's key (same stride required) whose row t holds x's
// features at target's coordinate t, or `fill` where x has no row there.
SparseTensor reindex_sparse(const SparseTensor& x, const SparseTensor& target, double fill = 0.0);

}  // namespace lattice::ops

namespace lattice {

// Operator forms (SPEC §7): `+` and `-` use the outer join, `*` the inner join,
// fills 0. In namespace lattice so that argument-dependent lookup finds them.
SparseTensor operator+(const SparseTensor& lhs, const SparseTensor& rhs);
SparseTensor operator-(const SparseTensor& lhs, const SparseTensor& rhs);
SparseTensor operator*(const SparseTensor& lhs, const SparseTensor& rhs);

}  // namespace lattice
