// Argument helpers shared by the differentiable wrappers (functions.cpp,
// functions_spatial.cpp): the form checks every wrapper makes on its inputs.
#pragma once

#include <optional>
#include <vector>

#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"

namespace lattice::autograd::detail {

using Grads = std::vector<std::optional<Value>>;

inline const SparseTensor& sparse_arg(const Variable& v, const char* op, const char* arg) {
  check(v.defined(), op, arg, "undefined variable");
  check<TypeError>(v.is_sparse(), op, arg, "must be a sparse tensor, got a dense array");
  return v.sparse();
}

inline std::optional<Array> optional_array(const Variable& v, const char* op, const char* arg) {
  if (!v.defined()) return std::nullopt;
  check<TypeError>(!v.is_sparse(), op, arg, "must be a dense array, got a sparse tensor");
  return v.array();
}

}  // namespace lattice::autograd::detail
