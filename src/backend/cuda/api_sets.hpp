// CUDA backend of the sparse-algebra and coordinate-set family (sets.cu).
// Plain C++ (no CUDA headers). Every function enqueues on the device's current
// stream and returns without waiting; output row counts stay on the device
// (int32 `active_rows` scalars) and kernels bound their work by them.
// Values already on the device are checked by the kernels (sticky errors).
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/ops/algebra.hpp"

namespace lattice::cuda {

// A new coordinate set: (capacity, 4) int32 coords (rows past *active_rows are
// zero) and its device-side row count.
struct SetParts {
  Array coords;
  Array active_rows;
};

// Row maps of a join (see cpu::AlignParts). Capacity: lhs's for inner and left
// joins, lhs + rhs for outer joins; set.coords is undefined for left joins.
struct AlignParts {
  SetParts set;
  Array lhs_rows;
  Array rhs_rows;
};
AlignParts align(const CoordinateSet& lhs, const CoordinateSet& rhs, ops::Join join, const char* op);

// out[r] = op(a, b) for r < *rows (see cpu::binary_rows); rows >= *rows are 0.
void binary_rows(const Array& lhs, const Array& rhs, const std::optional<Array>& lhs_rows,
                 const std::optional<Array>& rhs_rows, const Array& rows, ops::BinaryOp op, double lhs_fill,
                 double rhs_fill, Array& out);

// out[i] = x[rows[i]] or fill where rows[i] == -1; entries outside
// [-1, *x_rows) are recorded as a sticky error naming `op` and give fill.
void gather_rows(const Array& x, const Array& x_rows, const Array& rows, double fill, Array& out, const char* op);
// out[i] = src[perm[i]] for any dtype; perm entries must lie in [0, src rows).
void permute_rows(const Array& src, const Array& perm, Array& out);

// (capacity,) int32: r for r < *active_rows, -1 beyond (the row map of a set onto itself).
Array identity_rows(const CoordinateSet& set);
Array match_rows(const CoordinateSet& table, const CoordinateSet& query, const char* op);
Array lookup(const CoordinateSet& set, const Array& coords, const char* op);
// (M,) uint8: 1 where lookup(...) >= 0.
Array contains(const CoordinateSet& set, const Array& coords, const char* op);
SetParts downsample(const CoordinateSet& set, Int3 out_stride, const char* op);

// Codes of the rows below *rows (all rows when absent); later rows get
// all-ones. Values are checked on the device (sticky errors naming `op`).
Array morton_codes(const Array& coords, const std::optional<Array>& rows, Int3 stride, const char* op);
// Stable ascending argsort of the unsigned codes (CUB radix sort), (n,) int32.
Array morton_order(const Array& codes);

}  // namespace lattice::cuda
