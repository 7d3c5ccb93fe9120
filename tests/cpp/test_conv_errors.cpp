// Every error path of the convolution front ends (conv3d, subm_conv3d,
// conv_transpose3d, generative_conv_transpose3d), SPEC §14: each bad input
// raises a typed error whose message names the op, the argument and the
// offending value, before any state changes (the manager's relation cache is
// untouched by a failed call), and no op mutates its inputs.
// Inputs, weights, kernel geometry and strides here; targets, the relation
// cache and input immutability in test_conv_errors_targets.cpp.
#include "support/conv_errors.hpp"

namespace lattice::testing {
namespace {

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

}  // namespace
}  // namespace lattice::testing
