// Inputs and helpers shared by the convolution error tests
// (test_conv_errors.cpp, test_conv_errors_targets.cpp). Test-only: the
// helpers live in an anonymous namespace, one copy per test file.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/core/backend_info.hpp"
#include "lattice/core/device.hpp"
#include "lattice/ops/conv.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using Manager = std::shared_ptr<CoordinateManager>;

// Random unique coordinates at `stride` (two batch items), `cin` random channels.
SparseTensor make_x(const Manager& m, Int3 stride = Int3{1}, int cin = 3, DType dtype = DType::f32,
                    std::uint64_t seed = 1) {
  Rng rng(seed);
  const std::vector<Coord> coords = random_coords(rng, 2, -3, 3, I3{stride.x, stride.y, stride.z}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, dtype);
  return SparseTensor::from_coords(coords_array(coords), feats, {.stride = stride, .manager = m});
}

Array random_array(const Shape& shape, DType dtype = DType::f32, std::uint64_t seed = 7) {
  Rng rng(seed);
  return make_array(random_values(rng, static_cast<std::size_t>(shape.numel())), shape, dtype);
}

Array coords_of(const std::vector<std::int32_t>& flat) {
  return Array::from_vector(flat, Shape{static_cast<std::int64_t>(flat.size() / 4), 4}, Device::cpu());
}

enum class Kind { conv, subm, transposed, generative };
constexpr Kind k_all_kinds[] = {Kind::conv, Kind::subm, Kind::transposed, Kind::generative};

const char* op_name(Kind k) {
  switch (k) {
    case Kind::conv:
      return "[conv3d]";
    case Kind::subm:
      return "[subm_conv3d]";
    case Kind::transposed:
      return "[conv_transpose3d]";
    case Kind::generative:
      return "[generative_conv_transpose3d]";
  }
  return "?";
}

// One call of each kind with a 3x3x3 kernel (stride 2 for the transposed
// kinds, which needs x.stride divisible by 2).
SparseTensor run(Kind k, const SparseTensor& x, const Array& w, const std::optional<Array>& b, Int3 kernel = Int3{3}) {
  switch (k) {
    case Kind::conv:
      return ops::conv3d(x, w, b, {.kernel_size = kernel});
    case Kind::subm:
      return ops::subm_conv3d(x, w, b, {.kernel_size = kernel});
    case Kind::transposed:
      return ops::conv_transpose3d(x, w, b, {.kernel_size = kernel, .stride = Int3{2}});
    case Kind::generative:
      return ops::generative_conv_transpose3d(x, w, b, {.kernel_size = kernel, .stride = Int3{2}});
  }
  return {};
}

}  // namespace
}  // namespace lattice::testing
