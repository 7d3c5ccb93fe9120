// Every error path of the convolution front ends (conv3d, subm_conv3d,
// conv_transpose3d, generative_conv_transpose3d), SPEC §14: each bad input
// raises a typed error whose message names the op, the argument and the
// offending value, before any state changes (the manager's relation cache is
// untouched by a failed call), and no op mutates its inputs.
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

// ---------------------------------------------------------------------------
// x

TEST(ConvErrors, UndefinedInput) {
  const SparseTensor undefined;
  const Array w = random_array(Shape{27, 3, 8});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<ValueError>(nullptr, [&] { run(k, undefined, w, std::nullopt); }, {op_name(k), "'x'", "undefined"});
  }
}

TEST(ConvErrors, IntegerFeatures) {
  // from_coords refuses int features, but the internal constructor does not
  // check dtypes: the ops must.
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const SparseTensor xi = x.replace_feats(Array::zeros(Shape{x.capacity(), 3}, DType::i32));
  const Array w = random_array(Shape{27, 3, 8});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<TypeError>(m, [&] { run(k, xi, w, std::nullopt); }, {op_name(k), "'x'", "floating", "int32"});
  }
}

// ---------------------------------------------------------------------------
// weight and bias dtypes

TEST(ConvErrors, WeightAndBiasDtypeMismatch) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const SparseTensor x16 = make_x(m, Int3{2}, 3, DType::f16, 2);
  const Array w = random_array(Shape{27, 3, 8});
  const Array b = random_array(Shape{8});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<TypeError>(m, [&] { run(k, x, w.astype(DType::f16), b); },
                            {op_name(k), "'weight'", "float16", "float32"});
    expect_error<TypeError>(m, [&] { run(k, x, w.astype(DType::f64), b); },
                            {op_name(k), "'weight'", "float64", "float32"});
    expect_error<TypeError>(m, [&] { run(k, x, w.astype(DType::bf16), std::nullopt); },
                            {op_name(k), "'weight'", "bfloat16"});
    expect_error<TypeError>(m, [&] { run(k, x, w.astype(DType::i32), std::nullopt); },
                            {op_name(k), "'weight'", "int32"});
    expect_error<TypeError>(m, [&] { run(k, x16, w, std::nullopt); }, {op_name(k), "'weight'", "float32", "float16"});
    expect_error<TypeError>(m, [&] { run(k, x, w, b.astype(DType::f64)); },
                            {op_name(k), "'bias'", "float64", "float32"});
    expect_error<TypeError>(m, [&] { run(k, x16, w.astype(DType::f16), b); },
                            {op_name(k), "'bias'", "float32", "float16"});
  }
}

// ---------------------------------------------------------------------------
// weight shapes, every layout

TEST(ConvErrors, WeightShapeDense5d) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    // Wrong spatial extent on each axis.
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 2, 3, 3, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(2, 3, 3)", "(3, 3, 3)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3, 1, 3, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(3, 1, 3)", "(3, 3, 3)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3, 3, 5, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(3, 3, 5)", "(3, 3, 3)"});
    // Right extent, wrong C_in.
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3, 3, 3, 4}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "C_in = 4", "3 channels", "(8, 3, 3, 3, 4)"});
  }
  // Anisotropic kernel: the dense layout must follow (Kx, Ky, Kz) in order.
  expect_error<ValueError>(
      m,
      [&] {
        ops::conv3d(x, random_array(Shape{8, 1, 3, 3, 3}), std::nullopt, {.kernel_size = Int3{3, 1, 3}});
      },
      {"[conv3d]", "'weight'", "(1, 3, 3)", "(3, 1, 3)"});
}

TEST(ConvErrors, WeightShapeKernelMajor) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{26, 3, 8}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "K = 26", "volume 27", "(3, 3, 3)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3, 8}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "K = 8", "volume 27"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{27, 4, 8}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "C_in = 4", "3 channels", "(27, 4, 8)"});
    // The transposed C_out/C_in order (K, C_out, C_in) is not accepted silently.
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{27, 8, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "C_in = 8", "(27, 8, 3)"});
  }
  // A 2x2x2 kernel has K = 8.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(x, random_array(Shape{27, 3, 8}), std::nullopt, {});
                           },
                           {"[conv_transpose3d]", "'weight'", "K = 27", "volume 8", "(2, 2, 2)"});
}

TEST(ConvErrors, WeightShapePointwiseLayout) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    // (C_out, C_in) with a 3x3x3 kernel.
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "1x1x1", "(3, 3, 3)"});
    // 1x1x1 kernel, wrong C_in in every layout.
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 4}), std::nullopt, Int3{1});
                             },
                             {op_name(k), "'weight'", "C_in = 4", "(8, 4)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{1, 4, 8}), std::nullopt, Int3{1});
                             },
                             {op_name(k), "'weight'", "C_in = 4", "(1, 4, 8)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 1, 1, 1, 4}), std::nullopt, Int3{1});
                             },
                             {op_name(k), "'weight'", "C_in = 4", "(8, 1, 1, 1, 4)"});
  }
  // Pointwise conv3d (the feature-matrix-product fast path) checks the same way.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, random_array(Shape{8, 2}), std::nullopt, {.kernel_size = Int3{1}});
                           },
                           {"[conv3d]", "'weight'", "C_in = 2", "(8, 2)"});
  // A non-pointwise 1-D kernel volume is not pointwise either.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, random_array(Shape{8, 3}), std::nullopt, {.kernel_size = Int3{1, 1, 2}});
                           },
                           {"[conv3d]", "'weight'", "1x1x1", "(1, 1, 2)"});
}

TEST(ConvErrors, WeightRank) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{27, 3, 8, 1}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(C_out, Kx, Ky, Kz, C_in)", "(27, 3, 8, 1)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{8, 3, 3, 9}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(8, 3, 3, 9)"});
    expect_error<ValueError>(m, [&] { run(k, x, random_array(Shape{27}), std::nullopt); },
                             {op_name(k), "'weight'", "(27,)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, random_array(Shape{1, 8, 3, 3, 3, 3}), std::nullopt);
                             },
                             {op_name(k), "'weight'", "(1, 8, 3, 3, 3, 3)"});
    expect_error<ValueError>(m, [&] { run(k, x, random_array(Shape{}), std::nullopt); },
                             {op_name(k), "'weight'", "got shape ()"});
    expect_error<ValueError>(m, [&] { run(k, x, Array(), std::nullopt); }, {op_name(k), "'weight'", "undefined"});
  }
}

TEST(ConvErrors, BiasShape) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const Array w = random_array(Shape{27, 3, 8});
  const Array w5 = random_array(Shape{8, 3, 3, 3, 3});
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<ValueError>(m, [&] { run(k, x, w, random_array(Shape{7})); }, {op_name(k), "'bias'", "(8,)", "(7,)"});
    expect_error<ValueError>(m, [&] { run(k, x, w, random_array(Shape{3})); }, {op_name(k), "'bias'", "(8,)", "(3,)"});
    expect_error<ValueError>(m,
                             [&] {
                               run(k, x, w, random_array(Shape{1, 8}));
                             },
                             {op_name(k), "'bias'", "(8,)", "(1, 8)"});
    expect_error<ValueError>(m, [&] { run(k, x, w5, random_array(Shape{9})); }, {op_name(k), "'bias'", "(8,)", "(9,)"});
    expect_error<ValueError>(m, [&] { run(k, x, w, Array()); }, {op_name(k), "'bias'", "undefined"});
  }
}

// ---------------------------------------------------------------------------
// kernel geometry

TEST(ConvErrors, SubmEvenKernelOnEachAxis) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m);
  const std::vector<std::pair<Int3, std::string>> cases{{Int3{2, 3, 3}, "(2, 3, 3)"},
                                                        {Int3{3, 2, 3}, "(3, 2, 3)"},
                                                        {Int3{3, 3, 4}, "(3, 3, 4)"},
                                                        {Int3{2, 2, 2}, "(2, 2, 2)"},
                                                        {Int3{1, 1, 2}, "(1, 1, 2)"}};
  for (const auto& [size, text] : cases) {
    const Array w = random_array(Shape{size.product(), 3, 8});
    expect_error<ValueError>(m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = size}); },
                             {"[subm_conv3d]", "'kernel_size'", "odd", text});
  }
}

TEST(ConvErrors, KernelSizeStrideDilationPaddingRanges) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const Array w = random_array(Shape{27, 3, 8});
  const char* conv = "[conv3d]";
  // kernel_size
  for (Int3 size : {Int3{0}, Int3{-1}, Int3{3, 0, 3}, Int3{3, 3, -3}, Int3{65, 1, 1}}) {
    SCOPED_TRACE(size.str());
    expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.kernel_size = size}); },
                             {conv, "'kernel_size'", size.str()});
    expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = size}); },
                             {"[conv_transpose3d]", "'kernel_size'", size.str()});
    expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = size}); },
                             {"[generative_conv_transpose3d]", "'kernel_size'", size.str()});
  }
  // subm: 0 is even; negative sizes are refused too.
  expect_error<ValueError>(m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = Int3{0}}); },
                           {"[subm_conv3d]", "'kernel_size'", "(0, 0, 0)"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = Int3{3, -1, 3}});
                           },
                           {"[subm_conv3d]", "'kernel_size'", "(3, -1, 3)"});
  // stride
  for (Int3 stride : {Int3{0}, Int3{-2}, Int3{2, 0, 2}, Int3{1, 1, -1}}) {
    SCOPED_TRACE(stride.str());
    expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.stride = stride}); },
                             {conv, "'stride'", stride.str()});
    expect_error<ValueError>(
        m, [&] { ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .stride = stride}); },
        {"[conv_transpose3d]", "'stride'", stride.str()});
    expect_error<ValueError>(
        m, [&] { ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .stride = stride}); },
        {"[generative_conv_transpose3d]", "'stride'", stride.str()});
  }
  // dilation
  for (Int3 dilation : {Int3{0}, Int3{-1}, Int3{1, 0, 1}}) {
    SCOPED_TRACE(dilation.str());
    expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.dilation = dilation}); },
                             {conv, "'dilation'", dilation.str()});
    expect_error<ValueError>(m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.dilation = dilation}); },
                             {"[subm_conv3d]", "'dilation'", dilation.str()});
    expect_error<ValueError>(
        m, [&] { ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .dilation = dilation}); },
        {"[conv_transpose3d]", "'dilation'", dilation.str()});
  }
  // padding
  for (Int3 padding : {Int3{-1}, Int3{0, 0, -1}, Int3{-5, 1, 1}}) {
    SCOPED_TRACE(padding.str());
    expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.padding = padding}); },
                             {conv, "'padding'", padding.str()});
    expect_error<ValueError>(
        m, [&] { ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{3}, .padding = padding}); },
        {"[conv_transpose3d]", "'padding'", padding.str()});
  }
}

TEST(ConvErrors, KernelVolumeOverLimit) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const Array w = random_array(Shape{27, 3, 8});
  // 17^3 = 4913 and 64*64*2 = 8192 exceed 4096 although every axis is in range.
  expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.kernel_size = Int3{17}}); },
                           {"[conv3d]", "'kernel_size'", "4913", "4096", "(17, 17, 17)"});
  expect_error<ValueError>(m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = Int3{17}}); },
                           {"[subm_conv3d]", "'kernel_size'", "4913", "(17, 17, 17)"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{64, 64, 2}});
                           },
                           {"[conv_transpose3d]", "'kernel_size'", "8192", "(64, 64, 2)"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = Int3{64, 64, 2}});
                           },
                           {"[generative_conv_transpose3d]", "'kernel_size'", "8192"});
  // The limit itself is allowed by the geometry check (the weight is then wrong).
  expect_error<ValueError>(m, [&] { ops::conv3d(x, w, std::nullopt, {.kernel_size = Int3{16}}); },
                           {"[conv3d]", "'weight'", "K = 27", "volume 4096"});
}

// ---------------------------------------------------------------------------
// transposed strides

TEST(ConvErrors, TransposedStrideMustDivideInputStride) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 3);
  const Array w8 = random_array(Shape{8, 3, 8});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x1, w8, std::nullopt, {}); },
                           {"[conv_transpose3d]", "'stride'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x1, w8, std::nullopt, {}); },
                           {"[generative_conv_transpose3d]", "'stride'", "(2, 2, 2)", "(1, 1, 1)"});
  // Divides on x and z but not on y.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(x2, w8, std::nullopt, {.stride = Int3{2, 3, 2}});
                           },
                           {"[conv_transpose3d]", "'stride'", "(2, 3, 2)", "(2, 2, 2)", "axis y"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::generative_conv_transpose3d(x2, w8, std::nullopt, {.stride = Int3{1, 1, 4}});
                           },
                           {"[generative_conv_transpose3d]", "'stride'", "(1, 1, 4)", "axis z"});
  // Same with explicit target coordinates (the target's stride cannot be formed).
  const Array target = coords_of({0, 0, 0, 0});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x1, w8, std::nullopt, {.coordinates = target}); },
                           {"[conv_transpose3d]", "'stride'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x1, w8, std::nullopt, {.coordinates = target}); },
                           {"[generative_conv_transpose3d]", "'stride'", "(2, 2, 2)"});
}

// ---------------------------------------------------------------------------
// target coordinates

TEST(ConvErrors, TargetWithWrongStride) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const SparseTensor x4 = make_x(m, Int3{4}, 3, DType::f32, 4);
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  // conv3d stride 2 from stride 1 needs a stride-2 target.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                           },
                           {"[conv3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x4.key()});
                           },
                           {"[conv3d]", "'coordinates'", "(4, 4, 4)", "(2, 2, 2)"});
  // Target conv3d with stride 1 needs the input stride, also for a pointwise kernel.
  expect_error<ValueError>(m, [&] { ops::conv3d(x1, w27, std::nullopt, {.coordinates = x2}); },
                           {"[conv3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(
      m,
      [&] {
        ops::conv3d(x1, random_array(Shape{8, 3}), std::nullopt, {.kernel_size = Int3{1}, .coordinates = x2});
      },
      {"[conv3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  // Transposed from stride 2 by 2 needs a stride-1 target.
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x2}); },
                           {"[conv_transpose3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x4, w8, std::nullopt, {.coordinates = x1.key()}); },
                           {"[conv_transpose3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x4}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", "(4, 4, 4)", "(1, 1, 1)"});
}

TEST(ConvErrors, TargetFromAnotherManager) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const SparseTensor foreign1 = make_x(other, Int3{1}, 3, DType::f32, 5);
  const SparseTensor foreign4 = make_x(other, Int3{4}, 3, DType::f32, 6);
  const Array w8 = random_array(Shape{8, 3, 8});
  const std::string other_id = std::to_string(other->id());
  const std::string own_id = std::to_string(m->id());
  // A tensor of another manager.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, foreign4});
                           },
                           {"[conv3d]", "'coordinates'", "manager " + other_id, own_id});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1}); },
                           {"[conv_transpose3d]", "'coordinates'", "manager " + other_id});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", "manager " + other_id});
  // A key issued by another manager (even though its id may exist here too).
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, foreign4.key()});
                           },
                           {"[conv3d]", "'coordinates'", foreign4.key().str(), "not issued", own_id});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1.key()}); },
                           {"[conv_transpose3d]", "'coordinates'", foreign1.key().str(), "not issued"});
  expect_error<ValueError>(
      m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1.key()}); },
      {"[generative_conv_transpose3d]", "'coordinates'", foreign1.key().str()});
  EXPECT_EQ(other->cache_stats().relations, 0U);
}

TEST(ConvErrors, ExpiredTargetKey) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  CoordinateMapKey coarse, fine;
  {
    const SparseTensor t4 = make_x(m, Int3{4}, 3, DType::f32, 8);
    const SparseTensor t1 = make_x(m, Int3{1}, 3, DType::f32, 9);
    coarse = t4.key();
    fine = t1.key();
    ASSERT_NE(m->find(coarse), nullptr);
  }  // the only holders of these sets are gone
  ASSERT_EQ(m->find(coarse), nullptr);
  const Array w8 = random_array(Shape{8, 3, 8});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, coarse});
                           },
                           {"[conv3d]", "'coordinates'", coarse.str(), "no longer exist"});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = fine}); },
                           {"[conv_transpose3d]", "'coordinates'", fine.str(), "no longer exist"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = fine}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", fine.str(), "no longer exist"});
  // A key that was never issued ("no key").
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, CoordinateMapKey{}});
                           },
                           {"[conv3d]", "'coordinates'", "CoordinateMapKey(id=0"});
}

TEST(ConvErrors, TargetCoordinateArrays) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x4 = make_x(m, Int3{4}, 3, DType::f32, 4);
  const Array w8 = random_array(Shape{8, 3, 8});
  // Forward k2 s2 from stride 1 and transposed k2 s2 from stride 4 both target stride 2.
  const auto forward = [&](const Array& target) {
    return ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, target});
  };
  const auto transposed = [&](const Array& target) {
    return ops::conv_transpose3d(x4, w8, std::nullopt, {.coordinates = target});
  };
  const auto generative = [&](const Array& target) {
    return ops::generative_conv_transpose3d(x4, w8, std::nullopt, {.coordinates = target});
  };
  struct Call {
    const char* op;
    std::function<SparseTensor(const Array&)> fn;
  };
  const std::vector<Call> calls{
      {"[conv3d]", forward}, {"[conv_transpose3d]", transposed}, {"[generative_conv_transpose3d]", generative}};
  const Array good = coords_of({0, 2, 4, 6, 1, -2, 0, 8});
  for (const Call& c : calls) {
    SCOPED_TRACE(c.op);
    // dtype
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::f32)); }, {c.op, "'coordinates'", "int32", "float32"});
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::f64)); }, {c.op, "'coordinates'", "float64"});
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::i64)); }, {c.op, "'coordinates'", "int64"});
    // width / rank
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(Array::zeros(Shape{2, 3}, DType::i32));
                             },
                             {c.op, "'coordinates'", "(N, 4)", "(2, 3)"});
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(Array::zeros(Shape{2, 5}, DType::i32));
                             },
                             {c.op, "'coordinates'", "(N, 4)", "(2, 5)"});
    expect_error<ValueError>(m, [&] { c.fn(Array::zeros(Shape{8}, DType::i32)); }, {c.op, "'coordinates'", "(8,)"});
    expect_error<ValueError>(m, [&] { c.fn(Array()); }, {c.op, "'coordinates'", "undefined"});
    // not divisible by the output stride 2
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 2, 4, 6, 0, 2, 3, 6}));
                             },
                             {c.op, "'coordinates'", "row 1", "coordinate 3", "axis y", "not divisible", "(2, 2, 2)"});
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, -1, 0, 0}));
                             },
                             {c.op, "'coordinates'", "coordinate -1", "axis x", "not divisible"});
    // duplicates among the target rows
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 2, 2, 2, 0, 4, 4, 4, 0, 2, 2, 2}));
                             },
                             {c.op, "'coordinates'", "rows 0 and 2", "same coordinate", "(0, 2, 2, 2)"});
    // values outside the key range / bad batch
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 0, 262144, 0}));
                             },
                             {c.op, "'coordinates'", "262144", "overflows"});
    expect_error<ValueError>(m, [&] { c.fn(coords_of({-1, 0, 0, 0})); }, {c.op, "'coordinates'", "batch index -1"});
    // The good array is accepted by every kind.
    EXPECT_NO_THROW(c.fn(good));
  }
}

TEST(ConvErrors, CudaRequestsInCpuOnlyBuild) {
  const auto backends = backend_info().backends;
  if (std::find(backends.begin(), backends.end(), "cuda") != backends.end()) {
    GTEST_SKIP() << "this build has the CUDA backend; the CPU-only errors do not apply";
  }
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  // Memory on a CUDA device cannot be made.
  expect_error<NotCompiledError>(nullptr, [&] { Array::zeros(Shape{27, 3, 8}, DType::f32, Device::cuda()); }, {"CUDA"});
  expect_error<NotCompiledError>(nullptr, [&] { random_array(Shape{27, 3, 8}).to(Device::cuda()); }, {"CUDA"});
  expect_error<NotCompiledError>(nullptr, [&] { x.to(Device::cuda()); }, {"CUDA"});
  expect_error<DeviceError>(nullptr, [&] { set_default_device(Device::cuda()); },
                            {"[set_default_device]", "'device'", "cuda:0"});
  expect_error<DeviceError>(nullptr, [&] { set_default_device(Device::cuda(3)); }, {"'device'", "cuda:3"});
  EXPECT_TRUE(default_device().is_cpu());
  // A zero-element array can claim a CUDA device without memory: the ops
  // must refuse it as a device mismatch rather than touch it.
  const Array w_cuda = Array::empty(Shape{27, 3, 0}, DType::f32, Device::cuda());
  const Array w_zero = Array::empty(Shape{27, 3, 0}, DType::f32, Device::cpu());
  const Array b_cuda = Array::empty(Shape{0}, DType::f32, Device::cuda());
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<DeviceError>(m, [&] { run(k, x, w_cuda, std::nullopt); }, {op_name(k), "'weight'", "cuda:0", "cpu"});
    expect_error<DeviceError>(m, [&] { run(k, x, w_zero, b_cuda); }, {op_name(k), "'bias'", "cuda:0", "cpu"});
  }
}

TEST(ConvErrors, TransposedOutputBeyondKeyRange) {
  auto m = CoordinateManager::create();
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array feats = random_array(Shape{1, 3});
  const SparseTensor top = SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), feats, {.manager = m});
  const SparseTensor bottom = SparseTensor::from_coords(coords_of({0, 0, 0, -131072}), feats, {.manager = m});
  // A 3-kernel at stride 1 reaches one step past the largest coordinate.
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(top, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "131071", "(131072, ", "key range"});
  expect_error<ValueError>(
      m, [&] { ops::generative_conv_transpose3d(top, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[generative_conv_transpose3d]", "'x'", "131071", "(131072, ", "key range"});
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(bottom, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "-131072", "-131073)", "key range"});
  // Padding shifts the output the other way.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(bottom, random_array(Shape{8, 3, 8}), std::nullopt,
                                                   {.kernel_size = Int3{2}, .stride = Int3{1}, .padding = Int3{1}});
                           },
                           {"[conv_transpose3d]", "'x'", "-131073)"});
  // Logical 131071 at stride 2 (physical 262142), doubled by a k2 s2 transposed conv.
  const SparseTensor coarse =
      SparseTensor::from_coords(coords_of({0, 0, 262142, 0}), feats, {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(coarse, random_array(Shape{8, 3, 8}), std::nullopt, {});
                           },
                           {"[conv_transpose3d]", "'x'", "262142", "key range"});
  // The boundary itself is fine: a 1-kernel keeps the coordinate.
  const SparseTensor y = ops::conv_transpose3d(top, random_array(Shape{1, 3, 8}), std::nullopt,
                                               {.kernel_size = Int3{1}, .stride = Int3{1}});
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()), (std::vector<Coord>{{0, 131071, 0, 0}}));
}

// ---------------------------------------------------------------------------
// state

TEST(ConvErrors, FailedCallsLeaveRelationCacheUnchanged) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  // Warm the cache with a few relations.
  const SparseTensor subm = ops::subm_conv3d(x1, w27);
  const SparseTensor down = ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}});
  const SparseTensor up = ops::conv_transpose3d(x2, w8);
  const RelationCacheStats warm = m->cache_stats();
  ASSERT_EQ(warm.relations, 3U);

  // Failures detected at every stage: arguments, relation geometry, relation building.
  for (int repeat = 0; repeat < 2; ++repeat) {  // a retried failure fails the same way
    SCOPED_TRACE(repeat);
    expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x1, w8); }, {"[conv_transpose3d]", "'stride'"});
    expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x1, w8); },
                             {"[generative_conv_transpose3d]", "'stride'"});
    expect_error<ValueError>(m,
                             [&] {
                               ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                             },
                             {"[conv3d]", "'coordinates'"});
    expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x2.key()}); },
                             {"[conv_transpose3d]", "'coordinates'"});
    expect_error<ValueError>(m, [&] { ops::subm_conv3d(x1, w8); }, {"[subm_conv3d]", "'weight'"});
    expect_error<ValueError>(
        m, [&] { ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}, .padding = Int3{-1}}); },
        {"[conv3d]", "'padding'"});
  }
  const SparseTensor edge =
      SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), random_array(Shape{1, 3}), {.manager = m});
  const std::size_t with_edge = m->cache_stats().relations;
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(edge, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "key range"});
  EXPECT_EQ(m->cache_stats().relations, with_edge);

  // The cached relations still serve the same results.
  EXPECT_EQ(bytes_of(ops::subm_conv3d(x1, w27).feats()), bytes_of(subm.feats()));
  EXPECT_EQ(bytes_of(ops::conv_transpose3d(x2, w8).feats()), bytes_of(up.feats()));
  EXPECT_GE(m->cache_stats().hits, warm.hits + 2);
}

TEST(ConvErrors, FailedCallAtCacheCapacityEvictsNothing) {
  // A failed call must not push a live relation out of a full cache either.
  auto m = CoordinateManager::create();
  m->set_cache_capacity(3);
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const SparseTensor edge =
      SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), random_array(Shape{1, 3}), {.manager = m});
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  ops::subm_conv3d(x1, w27);  // the least recently used entry once the cache is full
  ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}});
  ops::conv_transpose3d(x2, w8);
  const RelationCacheStats full = m->cache_stats();
  ASSERT_EQ(full.relations, 3U);
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(edge, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "key range"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                           },
                           {"[conv3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  EXPECT_EQ(m->cache_stats().evictions, full.evictions) << "a failed call evicted a cached relation";
  // The oldest relation is still cached: using it again is a hit, not a rebuild.
  ops::subm_conv3d(x1, w27);
  EXPECT_EQ(m->cache_stats().misses, full.misses);
  EXPECT_EQ(m->cache_stats().hits, full.hits + 1);
}

// ---------------------------------------------------------------------------
// no op mutates its inputs

struct Snapshot {
  std::vector<unsigned char> coords, feats, active_rows, batch_counts, weight, bias;
  CoordinateMapKey key;
  std::int64_t rows = 0;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

Snapshot snapshot(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias) {
  Snapshot s;
  s.coords = bytes_of(x.coords());
  s.feats = bytes_of(x.feats());
  s.active_rows = bytes_of(x.active_rows());
  if (x.batch_counts()) s.batch_counts = bytes_of(*x.batch_counts());
  s.weight = bytes_of(weight);
  if (bias) s.bias = bytes_of(*bias);
  s.key = x.key();
  s.rows = x.rows();
  return s;
}

// An input with capacity rows past the active ones holding garbage (a
// duplicate and an off-lattice coordinate, huge features).
SparseTensor make_x_with_capacity(const Manager& m, Int3 stride, int cin, DType dtype, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Coord> coords = random_coords(rng, 2, -3, 3, I3{stride.x, stride.y, stride.z}, 0.2);
  const auto active = static_cast<std::int64_t>(coords.size());
  coords.push_back(coords.front());
  coords.push_back({0, 1, 1, 1});
  const auto capacity = static_cast<std::int64_t>(coords.size());
  std::vector<double> values = random_values(rng, static_cast<std::size_t>(active * cin));
  values.resize(static_cast<std::size_t>(capacity * cin), 1e30);
  return SparseTensor::from_coords(coords_array(coords), make_array(values, Shape{capacity, cin}, dtype),
                                   {.stride = stride, .manager = m, .active_rows = active});
}

struct MutationCase {
  std::string name;
  Int3 in_stride;
  DType dtype;
  std::function<Array(int cin, int cout, DType dtype)> weight;
  std::function<SparseTensor(const SparseTensor& x, const Array& w, const std::optional<Array>& b,
                             const SparseTensor& target)>
      call;
  Int3 target_stride{0};  // 0: no target tensor needed
};

Array kernel_major_weight(std::int64_t volume, int cin, int cout, DType dtype) {
  return random_array(Shape{volume, cin, cout}, dtype, 11);
}

std::vector<MutationCase> mutation_cases() {
  using ops::ConvRoute;
  std::vector<MutationCase> out;
  const auto km = [](std::int64_t volume) {
    return [volume](int cin, int cout, DType dt) { return kernel_major_weight(volume, cin, cout, dt); };
  };
  const auto dense = [](int size) {
    return [size](int cin, int cout, DType dt) { return random_array(Shape{cout, size, size, size, cin}, dt, 12); };
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    const std::string d(dtype_name(dt));
    out.push_back({"conv3d_k3_s2_" + d, Int3{1}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{3}, .stride = Int3{2}});
                   }});
    out.push_back({"conv3d_k3_s1_dense5d_" + d, Int3{2}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{3}, .padding = Int3{1}});
                   }});
    out.push_back({"conv3d_pointwise_" + d, Int3{1}, dt,
                   [](int cin, int cout, DType t) {
                     return random_array(Shape{cout, cin}, t, 13);
                   },
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{1}});
                   }});
    out.push_back({"conv3d_target_" + d, Int3{1}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::conv3d(x, w, b, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, t});
                   },
                   Int3{2}});
    out.push_back({"subm_conv3d_" + d, Int3{2}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::subm_conv3d(x, w, b);
                   }});
    out.push_back({"subm_conv3d_dense5d_fetch_on_demand_" + d, Int3{1}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::subm_conv3d(x, w, b, {.route = ConvRoute::fetch_on_demand});
                   }});
    out.push_back({"conv_transpose3d_" + d, Int3{2}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv_transpose3d(x, w, b);
                   }});
    out.push_back({"conv_transpose3d_target_dense5d_" + d, Int3{2}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::conv_transpose3d(x, w, b, {.kernel_size = Int3{3}, .coordinates = t.key()});
                   },
                   Int3{1}});
    out.push_back({"generative_conv_transpose3d_" + d, Int3{2}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::generative_conv_transpose3d(x, w, b);
                   }});
    out.push_back({"generative_conv_transpose3d_target_" + d, Int3{4}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::generative_conv_transpose3d(x, w, b, {.kernel_size = Int3{3}, .coordinates = t});
                   },
                   Int3{2}});
  }
  return out;
}

class ConvErrorsNoMutation : public ::testing::TestWithParam<MutationCase> {};

TEST_P(ConvErrorsNoMutation, InputsAreUnchangedBytewise) {
  const MutationCase& c = GetParam();
  auto m = CoordinateManager::create();
  constexpr int cin = 3, cout = 5;
  const SparseTensor x = make_x_with_capacity(m, c.in_stride, cin, c.dtype, 21);
  const Array weight = c.weight(cin, cout, c.dtype);
  for (const bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    const std::optional<Array> bias =
        with_bias ? std::optional<Array>(random_array(Shape{cout}, c.dtype, 14)) : std::nullopt;
    SparseTensor target;
    std::vector<unsigned char> target_coords;
    if (c.target_stride != Int3{0}) {
      target = make_x_with_capacity(m, c.target_stride, 1, c.dtype, 22);
      target_coords = bytes_of(target.coords());
    }
    const Snapshot before = snapshot(x, weight, bias);
    const SparseTensor y = c.call(x, weight, bias, target);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": an input changed";
    if (target.defined()) {
      EXPECT_EQ(bytes_of(target.coords()), target_coords) << c.name << ": the target changed";
      EXPECT_EQ(y.key(), target.key());
    }
    EXPECT_FALSE(y.feats().shares_buffer_with(x.feats()));
    EXPECT_FALSE(y.feats().shares_buffer_with(weight));
    EXPECT_EQ(y.dtype(), c.dtype);
    EXPECT_EQ(y.channels(), cout);
    // A second call (relation cached) sees the same inputs and gives the same bytes.
    const SparseTensor again = c.call(x, weight, bias, target);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": an input changed on the cached path";
    EXPECT_EQ(bytes_of(again.feats()), bytes_of(y.feats())) << c.name;
    EXPECT_EQ(again.key(), y.key());
    // Failed calls do not touch the inputs either.
    EXPECT_THROW(c.call(x, random_array(Shape{2, 2, 2, 2}, c.dtype), bias, target), ValueError);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": a failed call changed an input";
  }
}

INSTANTIATE_TEST_SUITE_P(ConvErrors, ConvErrorsNoMutation, ::testing::ValuesIn(mutation_cases()),
                         [](const ::testing::TestParamInfo<MutationCase>& info) { return info.param.name; });

}  // namespace
}  // namespace lattice::testing
