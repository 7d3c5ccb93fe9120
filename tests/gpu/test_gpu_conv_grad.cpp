// Convolution VJPs on CUDA (SPEC §13): every kind x dtype against the CPU
// backward evaluated in float64 on the same rounded inputs (per element), run
// to run bitwise equality (no atomics anywhere), and a ~100k-voxel submanifold
// case. dy is a function of the output coordinates, so the comparison holds
// whatever row order each device gives the output support.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu_harness.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/features.hpp"
#include "support/dense_reference.hpp"

namespace lattice::testing::gpu {
namespace {

using ops::ConvGrads;

enum class Kind { conv, pointwise, subm, transposed, generative, nsubm, ntransposed, ngenerative, linear };

struct GpuGradCase {
  std::string name;
  Kind kind;
  int k = 3, s = 1, in_stride = 1;
  bool target = false;
  bool dense = false;
};

bool normalized(Kind k) { return k == Kind::nsubm || k == Kind::ntransposed || k == Kind::ngenerative; }
bool transposed(Kind k) {
  return k == Kind::transposed || k == Kind::generative || k == Kind::ntransposed || k == Kind::ngenerative;
}

struct Inputs {
  SparseTensor x;
  Array weight, bias;
  std::optional<SparseTensor> target;
};

Array rounded(const std::vector<double>& v, const Shape& shape, DType dtype, DType round_to, Device dev) {
  return make_array(to_doubles(make_array(v, shape, round_to)), shape, dtype).to(dev);
}

// The same problem on `dev` in `dtype`, values rounded to `round_to`.
Inputs make_inputs(const GpuGradCase& c, int cin, int cout, int lo, int hi, double density, DType dtype, DType round_to,
                   Device dev) {
  Rng rng(std::hash<std::string>{}(c.name));
  const auto m = CoordinateManager::create();
  const I3 st{c.in_stride, c.in_stride, c.in_stride};
  const auto coords = random_coords(rng, 2, lo, hi, st, density);
  const auto n = static_cast<std::int64_t>(coords.size());
  Inputs in;
  in.x = SparseTensor::from_coords(coords_array(coords),
                                   rounded(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, dtype,
                                           round_to, Device::cpu()),
                                   {.stride = Int3{c.in_stride}, .manager = m})
             .to(dev);
  const int kt = c.k * c.k * c.k;
  const auto wv = random_values(rng, static_cast<std::size_t>(kt * cin * cout));
  const Shape ws = c.kind == Kind::linear || (c.kind == Kind::pointwise && !c.dense) ? Shape{cout, cin}
                   : c.dense                                                         ? Shape{cout, c.k, c.k, c.k, cin}
                                                                                     : Shape{kt, cin, cout};
  in.weight = rounded(wv, ws, dtype, round_to, dev);
  in.bias = rounded(random_values(rng, static_cast<std::size_t>(cout)), Shape{cout}, dtype, round_to, dev);
  if (c.target) {
    const int ts = transposed(c.kind) ? c.in_stride / c.s : c.in_stride * c.s;
    const auto tc = random_coords(rng, 2, lo - 1, hi + 1, I3{ts, ts, ts}, density);
    const auto tn = static_cast<std::int64_t>(tc.size());
    in.target = SparseTensor::from_coords(coords_array(tc), Array::zeros(Shape{tn, 1}, dtype, Device::cpu()),
                                          {.stride = Int3{ts}, .manager = m})
                    .to(dev);
  }
  return in;
}

ops::TargetCoords target_of(const Inputs& in) {
  return in.target ? ops::TargetCoords(*in.target) : ops::TargetCoords();
}

SparseTensor forward(const GpuGradCase& c, const Inputs& in) {
  const Int3 k{c.k}, s{c.s};
  switch (c.kind) {
    case Kind::conv:
    case Kind::pointwise:
      return ops::conv3d(in.x, in.weight, in.bias, {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::subm:
      return ops::subm_conv3d(in.x, in.weight, in.bias, {.kernel_size = k});
    case Kind::transposed:
      return ops::conv_transpose3d(in.x, in.weight, in.bias,
                                   {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::generative:
      return ops::generative_conv_transpose3d(in.x, in.weight, in.bias,
                                              {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::nsubm:
      return ops::normalized_subm_conv3d(in.x, in.weight, in.bias, {.kernel_size = k, .eps = 1e-3});
    case Kind::ntransposed:
      return ops::normalized_conv_transpose3d(
          in.x, in.weight, in.bias, {.kernel_size = k, .stride = s, .coordinates = target_of(in), .eps = 1e-3});
    case Kind::ngenerative:
      return ops::normalized_generative_conv_transpose3d(
          in.x, in.weight, in.bias, {.kernel_size = k, .stride = s, .coordinates = target_of(in), .eps = 1e-3});
    case Kind::linear:
      return ops::linear(in.x, in.weight, in.bias);
  }
  return {};
}

ConvGrads backward(const GpuGradCase& c, const Inputs& in, const SparseTensor& dy) {
  const Int3 k{c.k}, s{c.s};
  switch (c.kind) {
    case Kind::conv:
    case Kind::pointwise:
      return ops::conv3d_backward(in.x, in.weight, dy, {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::subm:
      return ops::subm_conv3d_backward(in.x, in.weight, dy, {.kernel_size = k});
    case Kind::transposed:
      return ops::conv_transpose3d_backward(in.x, in.weight, dy,
                                            {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::generative:
      return ops::generative_conv_transpose3d_backward(in.x, in.weight, dy,
                                                       {.kernel_size = k, .stride = s, .coordinates = target_of(in)});
    case Kind::nsubm:
      return ops::normalized_subm_conv3d_backward(in.x, in.weight, dy, {.kernel_size = k, .eps = 1e-3});
    case Kind::ntransposed:
      return ops::normalized_conv_transpose3d_backward(
          in.x, in.weight, dy, {.kernel_size = k, .stride = s, .coordinates = target_of(in), .eps = 1e-3});
    case Kind::ngenerative:
      return ops::normalized_generative_conv_transpose3d_backward(
          in.x, in.weight, dy, {.kernel_size = k, .stride = s, .coordinates = target_of(in), .eps = 1e-3});
    case Kind::linear:
      return ops::linear_backward(in.x, in.weight, dy);
  }
  return {};
}

// dy[r, c] = a fixed function of (coordinates of r, c), rounded to `round_to`.
SparseTensor coord_dy(const SparseTensor& y, DType dtype, DType round_to) {
  const std::int64_t cap = y.capacity(), ch = y.channels(), rows = y.rows();
  const auto coords = coords_from_array(y.coords().to(Device::cpu()), rows);
  std::vector<double> v(static_cast<std::size_t>(cap * ch), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const Coord& q = coords[static_cast<std::size_t>(r)];
    for (std::int64_t c = 0; c < ch; ++c) {
      std::uint64_t h = 1469598103934665603ULL;
      for (int a : {q[0], q[1], q[2], q[3], static_cast<int>(c)})
        h = (h ^ static_cast<std::uint64_t>(a + 1000)) * 1099511628211ULL;
      v[static_cast<std::size_t>(r * ch + c)] = static_cast<double>(h % 2001) / 1000.0 - 1.0;
    }
  }
  return y.replace_feats(rounded(v, Shape{cap, ch}, dtype, round_to, y.device()));
}

std::string compare_max(const Array& got, const Array& want, double tol) {
  const auto w = to_doubles(want.to(Device::cpu()));
  double mag = 1e-300;
  for (double x : w) mag = std::max(mag, std::abs(x));
  return compare_elements(to_doubles(got.to(Device::cpu())), w, std::vector<double>(w.size(), mag), tol, 1);
}

bool same_bytes(const Array& a, const Array& b) {
  const Array ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

std::vector<GpuGradCase> gpu_cases() {
  return {
      {"conv_k3", Kind::conv},
      {"conv_k2_s2_dense", Kind::conv, 2, 2, 1, false, true},
      {"conv_k3_target", Kind::conv, 3, 1, 1, true},
      {"pointwise", Kind::pointwise, 1},
      {"pointwise_dense", Kind::pointwise, 1, 1, 1, false, true},
      {"subm_k3", Kind::subm},
      {"subm_k3_dense", Kind::subm, 3, 1, 1, false, true},
      {"transposed_k2_s2", Kind::transposed, 2, 2, 2},
      {"transposed_k2_s2_target", Kind::transposed, 2, 2, 2, true},
      {"generative_k2_s2", Kind::generative, 2, 2, 2},
      {"generative_k2_s2_target", Kind::generative, 2, 2, 2, true},
      {"nsubm_k3", Kind::nsubm},
      {"ntransposed_k2_s2_target", Kind::ntransposed, 2, 2, 2, true},
      {"ngenerative_k2_s2", Kind::ngenerative, 2, 2, 2},
      {"linear", Kind::linear, 1},
  };
}

class GpuConvGrad : public GpuParamTest<GpuGradCase> {};

TEST_P(GpuConvGrad, MatchesCpuFloat64AndIsBitwiseStable) {
  const GpuGradCase c = GetParam();
  // Several channel shapes: tiles of the weight-gradient kernel cut and not.
  for (const auto& [cin, cout] :
       std::vector<std::pair<int, int>>{{3, 5}, {16, 16}, {20, 33}, {8, 32}, {256, 4}, {4, 96}}) {
    for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
      SCOPED_TRACE(c.name + " " + std::string(dtype_name(dtype)) + " " + std::to_string(cin) + "x" +
                   std::to_string(cout));
      poison_pool();
      const Inputs g = make_inputs(c, cin, cout, -4, 4, 0.3, dtype, dtype, k_gpu);
      const Inputs r = make_inputs(c, cin, cout, -4, 4, 0.3, DType::f64, dtype, Device::cpu());
      const SparseTensor yg = forward(c, g), yr = forward(c, r);
      const SparseTensor dyg = coord_dy(yg, dtype, dtype), dyr = coord_dy(yr, DType::f64, dtype);
      const ConvGrads a = backward(c, g, dyg);
      const ConvGrads b = backward(c, g, dyg);
      const ConvGrads ref = backward(c, r, dyr);
      const double tol = (dtype == DType::f64 ? 1e-10 : 8 * tolerance_for(dtype)) * (normalized(c.kind) ? 4 : 1);
      EXPECT_EQ(a.input->key(), g.x.key());
      EXPECT_EQ(a.weight->shape(), g.weight.shape());
      EXPECT_EQ(compare_max(a.input->feats(), ref.input->feats(), tol), "") << "dx";
      EXPECT_EQ(compare_max(*a.weight, *ref.weight, tol), "") << "dW";
      EXPECT_EQ(compare_max(*a.bias, *ref.bias, tol), "") << "db";
      EXPECT_TRUE(same_bytes(a.input->feats(), b.input->feats())) << "dx run to run";
      EXPECT_TRUE(same_bytes(*a.weight, *b.weight)) << "dW run to run";
      EXPECT_TRUE(same_bytes(*a.bias, *b.bias)) << "db run to run";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, GpuConvGrad, ::testing::ValuesIn(gpu_cases()),
                         [](const ::testing::TestParamInfo<GpuGradCase>& info) { return info.param.name; });

class GpuConvGradLarge : public GpuTest {};

TEST_F(GpuConvGradLarge, Subm100kVoxels) {
  // Two batches of a 60^3 box at density ~0.23: about 100k active voxels.
  const GpuGradCase c{"subm_100k", Kind::subm};
  const Inputs g = make_inputs(c, 16, 16, 0, 59, 0.23, DType::f32, DType::f32, k_gpu);
  const Inputs r = make_inputs(c, 16, 16, 0, 59, 0.23, DType::f64, DType::f32, Device::cpu());
  ASSERT_GT(g.x.rows(), 80000);
  const SparseTensor yg = forward(c, g), yr = forward(c, r);
  const ConvGrads a = backward(c, g, coord_dy(yg, DType::f32, DType::f32));
  const ConvGrads b = backward(c, g, coord_dy(yg, DType::f32, DType::f32));
  const ConvGrads ref = backward(c, r, coord_dy(yr, DType::f64, DType::f32));
  EXPECT_EQ(compare_max(a.input->feats(), ref.input->feats(), 8e-5), "") << "dx";
  EXPECT_EQ(compare_max(*a.weight, *ref.weight, 8e-5), "") << "dW";
  EXPECT_EQ(compare_max(*a.bias, *ref.bias, 8e-5), "") << "db";
  EXPECT_TRUE(same_bytes(*a.weight, *b.weight));
  EXPECT_TRUE(same_bytes(a.input->feats(), b.input->feats()));
}

TEST_F(GpuConvGradLarge, EmptyInputAndRequestSubsets) {
  for (const GpuGradCase& c : {GpuGradCase{"empty_subm", Kind::subm}, GpuGradCase{"empty_conv", Kind::conv, 2, 2},
                               GpuGradCase{"empty_nsubm", Kind::nsubm}}) {
    SCOPED_TRACE(c.name);
    const Inputs g = make_inputs(c, 3, 4, 0, -1, 0.5, DType::f32, DType::f32, k_gpu);  // lo > hi: no rows
    ASSERT_EQ(g.x.rows(), 0);
    const SparseTensor y = forward(c, g);
    const ConvGrads a = backward(c, g, y.replace_feats(Array::zeros(y.feats().shape(), DType::f32, k_gpu)));
    for (double v : to_doubles(a.weight->to(Device::cpu()))) EXPECT_EQ(v, 0.0);
    for (double v : to_doubles(a.bias->to(Device::cpu()))) EXPECT_EQ(v, 0.0);
  }
  const GpuGradCase c{"subsets", Kind::subm};
  const Inputs g = make_inputs(c, 5, 7, -3, 3, 0.3, DType::f32, DType::f32, k_gpu);
  const SparseTensor dy = coord_dy(forward(c, g), DType::f32, DType::f32);
  const ConvGrads all = ops::subm_conv3d_backward(g.x, g.weight, dy);
  const ConvGrads w = ops::subm_conv3d_backward(g.x, g.weight, dy, {}, {.input = false, .weight = true, .bias = false});
  EXPECT_FALSE(w.input || w.bias);
  ASSERT_TRUE(w.weight);
  EXPECT_TRUE(same_bytes(*w.weight, *all.weight));
}

TEST_F(GpuConvGradLarge, DeviceMismatchIsRejected) {
  const GpuGradCase c{"mismatch", Kind::subm};
  const Inputs g = make_inputs(c, 3, 4, -3, 3, 0.3, DType::f32, DType::f32, k_gpu);
  const SparseTensor y = forward(c, g);
  const SparseTensor dy_cpu = y.to(Device::cpu());
  expect_error<DeviceError>(nullptr, [&] { ops::subm_conv3d_backward(g.x, g.weight, dy_cpu); },
                            {"[subm_conv3d_backward]", "'dy'"});
  expect_error<DeviceError>(nullptr, [&] { ops::subm_conv3d_backward(g.x, g.weight.to(Device::cpu()), y); },
                            {"[subm_conv3d_backward]", "'weight'"});
}

}  // namespace
}  // namespace lattice::testing::gpu
