// CPU backend of the sparse-algebra and coordinate-set family (sets_cpu.cpp).
// Every function trusts the front end's checks (src/ops/algebra.cpp,
// src/ops/coordinate_sets.cpp) and works on the active rows only.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/ops/algebra.hpp"

namespace lattice::cpu {

// A new coordinate set built on the host: (rows, 4) int32 coords and its
// (B,) int32 batch_counts.
struct SetParts {
  Array coords;
  std::int64_t rows = 0;
  Array batch_counts;
};

// The row maps of a join of two sets with the same stride. `coords` is
// undefined for the left join (the output is lhs's set); otherwise a new set.
// lhs_rows / rhs_rows have one entry per output row (capacity = rows, or lhs's
// capacity for the left join, whose rows beyond the active rows are -1).
struct AlignParts {
  SetParts set;
  Array lhs_rows;
  Array rhs_rows;
};
AlignParts align(const CoordinateSet& lhs, const CoordinateSet& rhs, ops::Join join, const char* op);

// out[r] = op(a, b) for r < rows, a = lhs[lhs_rows[r]] or lhs_fill when -1
// (lhs[r] when lhs_rows is absent), b likewise; rows >= rows are 0.
void binary_rows(const Array& lhs, const Array& rhs, const std::optional<Array>& lhs_rows,
                 const std::optional<Array>& rhs_rows, std::int64_t rows, ops::BinaryOp op, double lhs_fill,
                 double rhs_fill, Array& out);

// out[i] = x[rows[i]] or fill where rows[i] == -1 (float dtypes; rows validated).
void gather_rows(const Array& x, const Array& rows, double fill, Array& out);
// out[i] = src[perm[i]] for any dtype (perm validated, one entry per out row).
void permute_rows(const Array& src, const Array& perm, Array& out);

// For each active row of `query`: the row of `table` at floor(c / s_t) * s_t
// per axis (s_t = table's stride), or -1. (query capacity,) int32.
Array match_rows(const CoordinateSet& table, const CoordinateSet& query, const char* op);
// For each (M, 4) physical query coordinate: the row of `set`, or -1 (also
// when not divisible by the stride or outside the key range).
Array lookup(const CoordinateSet& set, const Array& coords, const char* op);

// Unique floor(c / out_stride) * out_stride of the active rows, first-seen order.
SetParts downsample(const CoordinateSet& set, Int3 out_stride, const char* op);

// Morton codes (Appendix A) of the first `rows` rows, (coords.dim(0),) int64
// holding the unsigned pattern; later rows get all-ones. Values validated.
Array morton_codes(const Array& coords, std::int64_t rows, Int3 stride);
// Stable ascending argsort of the unsigned codes, (n,) int32.
Array morton_order(const Array& codes);

// Rows per batch item of the first `rows` coordinate rows.
Array batch_counts_of(const Array& coords, std::int64_t rows);

}  // namespace lattice::cpu
