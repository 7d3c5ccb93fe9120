// A trainable array: its value, its accumulated gradient and a name given by
// the module that owns it. Modules hold parameters through shared pointers so
// optimizers and state dictionaries see the same objects. Optimizers update
// `value` in place (the one place lattice writes into an existing array).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "lattice/core/array.hpp"

namespace lattice::nn {

struct ParameterData {
  Array value;
  std::optional<Array> grad;  // same shape, dtype and device as value; absent until a backward pass reaches it
  bool requires_grad = true;
};

using Parameter = std::shared_ptr<ParameterData>;

inline Parameter make_parameter(Array value, bool requires_grad = true) {
  return std::make_shared<ParameterData>(ParameterData{std::move(value), std::nullopt, requires_grad});
}

}  // namespace lattice::nn
