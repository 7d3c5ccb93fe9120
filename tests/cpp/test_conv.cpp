// Every convolution kind against the dense float64 reference
// (support/dense_reference), per element and per case, on random inputs.
#include <sstream>

#include <gtest/gtest.h>

#include "lattice/ops/conv.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

enum class Layout { kernel_major, dense_5d, pointwise };

struct ConvCase {
  RefKind kind;
  int cin, cout;
  I3 size, stride, padding, dilation;
  int batches;
  DType dtype;
  ops::ConvRoute route;
  Layout layout;
  bool bias;
  I3 in_stride;
  std::uint64_t seed;
};

std::string kind_name(RefKind k) {
  switch (k) {
    case RefKind::forward:
      return "forward";
    case RefKind::target:
      return "target";
    case RefKind::submanifold:
      return "subm";
    case RefKind::transposed:
      return "transposed";
    case RefKind::target_transposed:
      return "target_transposed";
    case RefKind::generative:
      return "generative";
  }
  return "?";
}

std::string i3(const I3& v) {
  std::ostringstream os;
  os << v[0] << "x" << v[1] << "x" << v[2];
  return os.str();
}

std::string describe(const ConvCase& c) {
  std::ostringstream os;
  os << kind_name(c.kind) << "_c" << c.cin << "_" << c.cout << "_k" << i3(c.size) << "_s" << i3(c.stride) << "_p"
     << i3(c.padding) << "_d" << i3(c.dilation) << "_b" << c.batches << "_" << dtype_name(c.dtype) << "_"
     << ops::route_name(c.route) << (c.layout == Layout::dense_5d ? "_dense5d" : "") << (c.bias ? "_bias" : "") << "_in"
     << i3(c.in_stride);
  return os.str();
}

// A structured sweep: each value of every axis of the test matrix appears
// for every kind, combined by cycling with coprime periods.
std::vector<ConvCase> make_cases() {
  const std::vector<std::pair<int, int>> channels{{1, 1}, {3, 16}, {16, 33}, {33, 3}, {16, 16}};
  const std::vector<I3> sizes{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {5, 5, 5}, {3, 1, 3}};
  const std::vector<I3> odd_sizes{{1, 1, 1}, {3, 3, 3}, {5, 5, 5}, {3, 1, 3}};
  const std::vector<I3> strides{{1, 1, 1}, {2, 2, 2}, {2, 1, 2}};
  const std::vector<DType> dtypes{DType::f32, DType::f16, DType::f32, DType::f64, DType::bf16, DType::f16};
  std::vector<ConvCase> out;
  const std::vector<RefKind> kinds{RefKind::forward,           RefKind::target,
                                   RefKind::submanifold,       RefKind::transposed,
                                   RefKind::target_transposed, RefKind::generative};
  for (RefKind kind : kinds) {
    const bool transposed =
        kind == RefKind::transposed || kind == RefKind::target_transposed || kind == RefKind::generative;
    for (int i = 0; i < 30; ++i) {
      ConvCase c{};
      c.kind = kind;
      c.cin = channels[static_cast<std::size_t>(i) % channels.size()].first;
      c.cout = channels[static_cast<std::size_t>(i) % channels.size()].second;
      if (kind == RefKind::submanifold) {
        c.size = odd_sizes[static_cast<std::size_t>(i) % odd_sizes.size()];
        c.stride = {1, 1, 1};
      } else {
        c.size = sizes[static_cast<std::size_t>(i) % sizes.size()];
        c.stride = strides[static_cast<std::size_t>(i / 2) % strides.size()];
      }
      const bool padded = kind != RefKind::submanifold && kind != RefKind::generative && i % 3 == 1;
      c.padding = padded ? I3{1, 1, 1} : I3{0, 0, 0};
      c.dilation = (kind != RefKind::generative && i % 7 == 3) ? I3{2, 2, 2} : I3{1, 1, 1};
      c.batches = i % 2 == 0 ? 1 : 3;
      c.dtype = dtypes[static_cast<std::size_t>(i) % dtypes.size()];
      c.route = i % 4 == 2 ? ops::ConvRoute::fetch_on_demand : ops::ConvRoute::gather_gemm_scatter;
      c.layout = i % 5 == 4 ? Layout::dense_5d : Layout::kernel_major;
      c.bias = i % 3 != 0;
      // Transposed kinds need an input stride the kernel stride divides.
      c.in_stride = transposed ? I3{c.stride[0] * (i % 4 == 1 ? 2 : 1), c.stride[1] * (i % 4 == 1 ? 2 : 1),
                                    c.stride[2] * (i % 4 == 1 ? 2 : 1)}
                               : (i % 5 == 3 ? I3{2, 2, 2} : I3{1, 1, 1});
      c.seed = 1000u + static_cast<std::uint64_t>(out.size());
      out.push_back(c);
    }
  }
  // The pointwise layout (C_out, C_in) on a 1x1x1 kernel, with and without a target.
  auto pointwise = [&](RefKind kind, int cin, int cout, I3 stride, DType dtype, ops::ConvRoute route, I3 in_stride) {
    ConvCase c{};
    c.kind = kind;
    c.cin = cin;
    c.cout = cout;
    c.size = {1, 1, 1};
    c.stride = stride;
    c.padding = {0, 0, 0};
    c.dilation = {1, 1, 1};
    c.batches = 3;
    c.dtype = dtype;
    c.route = route;
    c.layout = Layout::pointwise;
    c.bias = cin != 3;
    c.in_stride = in_stride;
    c.seed = 77 + out.size();
    out.push_back(c);
  };
  pointwise(RefKind::forward, 16, 33, {1, 1, 1}, DType::f32, ops::ConvRoute::automatic, {1, 1, 1});
  pointwise(RefKind::forward, 3, 16, {1, 1, 1}, DType::f16, ops::ConvRoute::gather_gemm_scatter, {2, 2, 2});
  pointwise(RefKind::target, 16, 16, {2, 2, 2}, DType::f32, ops::ConvRoute::automatic, {1, 1, 1});
  return out;
}

I3 out_stride_of(const ConvCase& c) {
  switch (c.kind) {
    case RefKind::submanifold:
      return c.in_stride;
    case RefKind::forward:
    case RefKind::target:
      return {c.in_stride[0] * c.stride[0], c.in_stride[1] * c.stride[1], c.in_stride[2] * c.stride[2]};
    default:
      return {c.in_stride[0] / c.stride[0], c.in_stride[1] / c.stride[1], c.in_stride[2] / c.stride[2]};
  }
}

class ConvAgainstDense : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvAgainstDense, MatchesDenseReferencePerElement) {
  const ConvCase c = GetParam();
  Rng rng(c.seed);
  const std::vector<Coord> in_coords = random_coords(rng, c.batches, -4, 3, c.in_stride, 0.3);
  const auto n = static_cast<std::int64_t>(in_coords.size());
  const RefSpec spec{c.size, c.stride, c.padding, c.dilation};
  const std::int64_t volume = std::int64_t{c.size[0]} * c.size[1] * c.size[2];

  // Inputs are drawn in float64 and rounded to the storage dtype; the
  // reference computes on the rounded values.
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c.cin)), Shape{n, c.cin}, c.dtype);
  const Array w_km = make_array(random_values(rng, static_cast<std::size_t>(volume * c.cin * c.cout)),
                                Shape{volume, c.cin, c.cout}, c.dtype);
  const std::vector<double> w_ref = to_doubles(w_km);
  Array weight = w_km;
  if (c.layout == Layout::dense_5d) {
    // (K, C_in, C_out) -> (C_out, Kx, Ky, Kz, C_in)
    std::vector<double> dense(w_ref.size());
    for (std::int64_t k = 0; k < volume; ++k)
      for (int ci = 0; ci < c.cin; ++ci)
        for (int co = 0; co < c.cout; ++co)
          dense[static_cast<std::size_t>((co * volume + k) * c.cin + ci)] =
              w_ref[static_cast<std::size_t>((k * c.cin + ci) * c.cout + co)];
    weight = make_array(dense, Shape{c.cout, c.size[0], c.size[1], c.size[2], c.cin}, c.dtype);
  } else if (c.layout == Layout::pointwise) {
    std::vector<double> pw(w_ref.size());
    for (int ci = 0; ci < c.cin; ++ci)
      for (int co = 0; co < c.cout; ++co)
        pw[static_cast<std::size_t>(co * c.cin + ci)] = w_ref[static_cast<std::size_t>(ci * c.cout + co)];
    weight = make_array(pw, Shape{c.cout, c.cin}, c.dtype);
  }
  std::optional<Array> bias;
  std::vector<double> bias_ref;
  if (c.bias) {
    bias = make_array(random_values(rng, static_cast<std::size_t>(c.cout)), Shape{c.cout}, c.dtype);
    bias_ref = to_doubles(*bias);
  }

  auto manager = CoordinateManager::create();
  const SparseTensor x = SparseTensor::from_coords(
      coords_array(in_coords), feats, {.stride = {c.in_stride[0], c.in_stride[1], c.in_stride[2]}, .manager = manager});
  const I3 out_stride = out_stride_of(c);

  // Target supports: part of the natural support plus sites no edge reaches.
  std::vector<Coord> target;
  const bool has_target = c.kind == RefKind::target || c.kind == RefKind::target_transposed;
  if (has_target) {
    const RefKind natural = c.kind == RefKind::target ? RefKind::forward : RefKind::transposed;
    for (const Coord& t : ref_support(natural, in_coords, c.in_stride, spec, nullptr)) {
      if (rng.uniform(0, 1) < 0.8) target.push_back(t);
    }
    std::set<Coord> have(target.begin(), target.end());
    for (int extra = 0; extra < 6; ++extra) {
      const Coord t{0, static_cast<int>(rng.integer(-12, 12)) * out_stride[0],
                    static_cast<int>(rng.integer(-12, 12)) * out_stride[1],
                    static_cast<int>(rng.integer(-12, 12)) * out_stride[2]};
      if (have.insert(t).second) target.push_back(t);
    }
  }
  const Int3 size{c.size[0], c.size[1], c.size[2]}, stride{c.stride[0], c.stride[1], c.stride[2]},
      padding{c.padding[0], c.padding[1], c.padding[2]}, dilation{c.dilation[0], c.dilation[1], c.dilation[2]};
  SparseTensor y;
  switch (c.kind) {
    case RefKind::forward:
      y = ops::conv3d(x, weight, bias, {size, stride, padding, dilation, {}, c.route});
      break;
    case RefKind::target:
      y = ops::conv3d(x, weight, bias, {size, stride, padding, dilation, coords_array(target), c.route});
      break;
    case RefKind::submanifold:
      y = ops::subm_conv3d(x, weight, bias, {size, dilation, c.route});
      break;
    case RefKind::transposed:
      y = ops::conv_transpose3d(x, weight, bias, {size, stride, padding, dilation, {}, c.route});
      break;
    case RefKind::target_transposed:
      y = ops::conv_transpose3d(x, weight, bias, {size, stride, padding, dilation, coords_array(target), c.route});
      break;
    case RefKind::generative:
      y = ops::generative_conv_transpose3d(x, weight, bias, {size, stride, {}, c.route});
      break;
  }

  // Output support and its order follow the SPEC rules exactly.
  const std::vector<Coord> expect_support =
      ref_support(c.kind, in_coords, c.in_stride, spec, has_target ? &target : nullptr);
  const std::vector<Coord> got_support = coords_from_array(y.coords(), y.rows());
  ASSERT_EQ(got_support, expect_support) << describe(c);
  EXPECT_EQ(y.stride(), (Int3{out_stride[0], out_stride[1], out_stride[2]})) << describe(c);
  EXPECT_EQ(y.dtype(), c.dtype);
  EXPECT_EQ(y.channels(), c.cout);
  if (c.kind == RefKind::submanifold || (c.kind == RefKind::forward && c.stride == I3{1, 1, 1})) {
    EXPECT_EQ(y.key(), x.key()) << "the output must reuse the input identity";
  }

  const RefConvResult ref = ref_conv(c.kind, in_coords, c.in_stride, to_doubles(feats), c.cin, w_ref, c.cout, bias_ref,
                                     spec, expect_support, out_stride);
  const std::vector<double> got = to_doubles(y.feats().rows(0, y.rows()));
  const std::string report =
      compare_elements(got, ref.values, ref.magnitude, tolerance_for(c.dtype), static_cast<std::size_t>(c.cout));
  EXPECT_TRUE(report.empty()) << describe(c) << "\n" << report;
}

INSTANTIATE_TEST_SUITE_P(AllKinds, ConvAgainstDense, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<ConvCase>& info) {
                           return std::to_string(info.index) + "_" + describe(info.param);
                         });

}  // namespace
}  // namespace lattice::testing

namespace lattice::testing {
namespace {

// Runs one conv of `kind` with all-ones features and weights, so each output
// value is bias + (number of edges into the row) * C_in.
SparseTensor run_kind(RefKind kind, const SparseTensor& x, int cout, const Int3& k, const Int3& r) {
  const std::int64_t volume = k.product();
  const Array w = Array::full(Shape{volume, x.channels(), cout}, DType::f32, 1.0);
  switch (kind) {
    case RefKind::submanifold:
      return ops::subm_conv3d(x, w, std::nullopt, {.kernel_size = k});
    case RefKind::transposed:
      return ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = k, .stride = r});
    case RefKind::generative:
      return ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = k, .stride = r});
    default:
      return ops::conv3d(x, w, std::nullopt, {.kernel_size = k, .stride = r});
  }
}

TEST(ConvEdgeCases, EmptyTensorEveryKind) {
  auto m = CoordinateManager::create();
  const SparseTensor x = SparseTensor::from_coords(
      Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 3}, DType::f32), {.stride = Int3{2}, .manager = m});
  for (RefKind kind : {RefKind::forward, RefKind::submanifold, RefKind::transposed, RefKind::generative}) {
    const SparseTensor y = run_kind(kind, x, 5, Int3{3}, Int3{2});
    EXPECT_EQ(y.rows(), 0);
    EXPECT_EQ(y.channels(), 5);
  }
  const SparseTensor p = ops::conv3d(x, Array::zeros(Shape{5, 3}, DType::f32), std::nullopt, {.kernel_size = 1});
  EXPECT_EQ(p.rows(), 0);
}

TEST(ConvEdgeCases, OnePointAtTheEdgeOfTheKeyRange) {
  // A single voxel with large, negative coordinates: each kind sees exactly
  // the edges the geometry allows.
  auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{7, -131072, 131070, -5}, Shape{1, 4}),
                                Array::full(Shape{1, 2}, DType::f32, 1.0), {.stride = Int3{2, 1, 1}, .manager = m});
  const SparseTensor s = run_kind(RefKind::submanifold, x, 3, Int3{3}, Int3{1});
  EXPECT_EQ(s.feats().to_vector<float>(), (std::vector<float>{2, 2, 2}));  // centre only
  const SparseTensor d = run_kind(RefKind::forward, x, 1, Int3{2}, Int3{2});
  // logical (-65536, 131070, -5) at stride (2,1,1) -> floor(/2) -> (-32768, 65535, -3) at stride (4,2,2)
  EXPECT_EQ(coords_from_array(d.coords(), 1)[0], (Coord{7, -131072, 131070, -6}));
  const SparseTensor g = run_kind(RefKind::generative, x, 1, Int3{2, 1, 1}, Int3{2, 1, 1});
  EXPECT_EQ(g.rows(), 2);
  EXPECT_EQ(g.stride(), (Int3{1, 1, 1}));
}

TEST(ConvEdgeCases, CapacityRowsAreNeverRead) {
  // 5 rows of capacity, 3 active. The inactive rows hold a duplicate of an
  // active coordinate and huge features: any read of them would show.
  auto m = CoordinateManager::create();
  const Array coords = Array::from_vector(
      std::vector<std::int32_t>{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 9, 9}, Shape{5, 4});
  const Array feats = Array::from_vector(std::vector<float>{1, 1, 1, 1e30f, 1e30f}, Shape{5, 1});
  const SparseTensor x = SparseTensor::from_coords(coords, feats, {.manager = m, .active_rows = 3});
  for (RefKind kind : {RefKind::forward, RefKind::submanifold, RefKind::transposed, RefKind::generative}) {
    const Int3 r{kind == RefKind::submanifold ? 1 : (kind == RefKind::forward ? 2 : 1)};
    const SparseTensor y = run_kind(kind, x, 1, Int3{3}, r);
    const std::vector<float> out = y.feats().rows(0, y.rows()).to_vector<float>();
    for (float v : out) EXPECT_LE(v, 3.0f) << "a capacity row was read";
    EXPECT_LE(y.rows(), 3 * 27);
  }
  const SparseTensor s = run_kind(RefKind::submanifold, x, 1, Int3{3}, Int3{1});
  EXPECT_EQ(s.rows(), 3);
  EXPECT_EQ(s.capacity(), 5);
  // All three active voxels are mutual 3x3x3 neighbours.
  EXPECT_EQ(s.feats().to_vector<float>(), (std::vector<float>{3, 3, 3, 0, 0})) << "capacity rows are zeroed";
}

TEST(ConvEdgeCases, StrideBookkeepingRoundTrip) {
  auto m = CoordinateManager::create();
  Rng rng(3);
  const auto coords = random_coords(rng, 2, -6, 6, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  const SparseTensor x =
      SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 2}, DType::f32), {.manager = m});
  const SparseTensor down = run_kind(RefKind::forward, x, 2, Int3{2}, Int3{2, 1, 2});
  EXPECT_EQ(down.stride(), (Int3{2, 1, 2}));
  const SparseTensor down2 = run_kind(RefKind::forward, down, 2, Int3{2}, Int3{2});
  EXPECT_EQ(down2.stride(), (Int3{4, 2, 4}));
  const SparseTensor up = ops::conv_transpose3d(down2, Array::zeros(Shape{8, 2, 2}, DType::f32), std::nullopt,
                                                {.kernel_size = 2, .stride = 2, .coordinates = down});
  EXPECT_EQ(up.key(), down.key()) << "target transposed output takes the target's key";
  EXPECT_EQ(up.stride(), down.stride());
  EXPECT_THROW(ops::conv_transpose3d(down, Array::zeros(Shape{8, 2, 2}, DType::f32), std::nullopt,
                                     {.kernel_size = 2, .stride = 2}),
               ValueError)
      << "stride 2 does not divide stride 1 on the y axis";
}

}  // namespace
}  // namespace lattice::testing

namespace lattice::testing {
namespace {

// The fused epilogue equals the unfused sequence: relu((conv + b) * scale + shift + residual).
class ConvEpilogueTest : public ::testing::TestWithParam<DType> {};

TEST_P(ConvEpilogueTest, MatchesTheUnfusedSequence) {
  const DType dtype = GetParam();
  Rng rng(17 + static_cast<int>(dtype));
  auto m = CoordinateManager::create();
  const auto coords = random_coords(rng, 2, -5, 4, {1, 1, 1}, 0.25);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int cin = 8, cout = 16;
  const SparseTensor x = SparseTensor::from_coords(
      coords_array(coords), make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, dtype),
      {.manager = m});
  const Array w =
      make_array(random_values(rng, static_cast<std::size_t>(27 * cin * cout)), Shape{27, cin, cout}, dtype);
  const Array b = make_array(random_values(rng, cout), Shape{cout}, dtype);
  const Array scale = make_array(random_values(rng, cout), Shape{cout}, DType::f32);
  const Array shift = make_array(random_values(rng, cout), Shape{cout}, DType::f32);
  const SparseTensor residual =
      x.replace_feats(make_array(random_values(rng, static_cast<std::size_t>(n * cout)), Shape{n, cout}, dtype));
  for (bool relu : {false, true}) {
    const SparseTensor fused =
        ops::subm_conv3d(x, w, b, {.epilogue = {.scale = scale, .shift = shift, .residual = residual, .relu = relu}});
    const SparseTensor plain = ops::subm_conv3d(x, w, b);
    const auto y = to_doubles(plain.feats()), r = to_doubles(residual.feats());
    const auto sc = to_doubles(scale), sh = to_doubles(shift);
    std::vector<double> expect(y.size()), mag(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) {
      const std::size_t c = i % cout;
      double v = y[i] * sc[c] + sh[c] + r[i];
      expect[i] = relu ? std::max(v, 0.0) : v;
      mag[i] = std::abs(y[i] * sc[c]) + std::abs(sh[c]) + std::abs(r[i]) + 1.0;
    }
    const std::string report = compare_elements(to_doubles(fused.feats()), expect, mag, 2 * tolerance_for(dtype), cout);
    EXPECT_TRUE(report.empty()) << report;
    EXPECT_EQ(fused.key(), x.key());
  }
  // Pointwise and strided convolutions take the epilogue too.
  const SparseTensor p = ops::conv3d(x, make_array(random_values(rng, cin * cout), Shape{cout, cin}, dtype),
                                     std::nullopt, {.kernel_size = 1, .epilogue = {.relu = true}});
  for (double v : to_doubles(p.feats())) EXPECT_GE(v, 0.0);
  const SparseTensor d = ops::conv3d(x, make_array(random_values(rng, 8 * cin * cout), Shape{8, cin, cout}, dtype),
                                     std::nullopt, {.kernel_size = 2, .stride = 2, .epilogue = {.shift = shift}});
  EXPECT_EQ(d.channels(), cout);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ConvEpilogueTest, ::testing::Values(DType::f32, DType::f64, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(ConvEpilogueTest, Errors) {
  auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 0, 0, 1, 0, 0}, Shape{2, 4}),
                                Array::full(Shape{2, 3}, DType::f32, 1.0), {.manager = m});
  const Array w = Array::full(Shape{27, 3, 4}, DType::f32, 1.0);
  expect_error<ValueError>(
      m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.epilogue = {.scale = Array::zeros(Shape{3}, DType::f32)}}); },
      {"[subm_conv3d]", "'epilogue.scale'", "(4,)"});
  expect_error<TypeError>(
      m, [&] { ops::subm_conv3d(x, w, std::nullopt, {.epilogue = {.shift = Array::zeros(Shape{4}, DType::f64)}}); },
      {"'epilogue.shift'", "float64"});
  const SparseTensor other =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 0, 0, 1, 0, 0}, Shape{2, 4}),
                                Array::full(Shape{2, 4}, DType::f32, 1.0), {.manager = m});
  expect_error<ValueError>([&] { ops::subm_conv3d(x, w, std::nullopt, {.epilogue = {.residual = other}}); },
                           {"'epilogue.residual'", "coordinate key"});
  expect_error<ValueError>([&] { ops::subm_conv3d(x, w, std::nullopt, {.epilogue = {.residual = x}}); },
                           {"'epilogue.residual'", "3 channels"});
}

}  // namespace
}  // namespace lattice::testing
