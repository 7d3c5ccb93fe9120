// Convolution VJPs (SPEC §13) on the CPU: every kind and weight layout against
// central finite differences in float64 of L = <dy, conv(x, W, b)>; the
// adjoint identity <dy, conv(x, W)> = <dx, x> = <dW, W> for the linear forms;
// float32 / float16 / bfloat16 against float64 on the same rounded inputs;
// empty tensors, one row, GradRequest subsets and every error path.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/conv.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/features.hpp"
#include "support/dense_reference.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using ops::ConvGrads;
using ops::GradRequest;

Int3 int3(const I3& v) { return Int3{v[0], v[1], v[2]}; }

enum class Kind { conv, subm, transposed, generative, nsubm, ntransposed, ngenerative, linear };
enum class Layout { kernel_major, dense, pointwise };

struct GradCase {
  std::string name;
  Kind kind;
  I3 size{3, 3, 3}, stride{1, 1, 1}, padding{0, 0, 0}, dilation{1, 1, 1}, in_stride{1, 1, 1};
  bool target = false;
  Layout layout = Layout::kernel_major;
};

bool normalized(Kind k) { return k == Kind::nsubm || k == Kind::ntransposed || k == Kind::ngenerative; }
bool transposed(Kind k) {
  return k == Kind::transposed || k == Kind::generative || k == Kind::ntransposed || k == Kind::ngenerative;
}

// One problem: x, W, b and a target on a fresh manager, all drawn from `seed`;
// values are rounded to `round_to` and stored in `dtype`.
struct Problem {
  GradCase c;
  std::shared_ptr<CoordinateManager> m;
  SparseTensor x;
  Array weight, bias;
  std::optional<SparseTensor> target;
  int cin = 2, cout = 3;
};

Array rounded(const std::vector<double>& v, const Shape& shape, DType dtype, DType round_to) {
  return make_array(to_doubles(make_array(v, shape, round_to)), shape, dtype);
}

Problem make_problem(const GradCase& c, DType dtype, DType round_to, int rows_hint = 0, std::uint64_t seed = 7) {
  Problem p{c, CoordinateManager::create()};
  Rng rng(seed + std::hash<std::string>{}(c.name));
  std::vector<Coord> coords = random_coords(rng, 2, -2, 2, c.in_stride, 0.3);
  if (rows_hint > 0) coords.resize(static_cast<std::size_t>(rows_hint));
  if (rows_hint < 0) coords.clear();
  const auto n = static_cast<std::int64_t>(coords.size());
  p.x = SparseTensor::from_coords(
      coords_array(coords),
      rounded(random_values(rng, static_cast<std::size_t>(n * p.cin)), Shape{n, p.cin}, dtype, round_to),
      {.stride = int3(c.in_stride), .manager = p.m});
  const int k_total = c.size[0] * c.size[1] * c.size[2];
  const std::vector<double> wv = random_values(rng, static_cast<std::size_t>(k_total * p.cin * p.cout));
  if (c.layout == Layout::kernel_major) {
    p.weight = rounded(wv, Shape{k_total, p.cin, p.cout}, dtype, round_to);
  } else if (c.layout == Layout::dense) {
    p.weight = rounded(wv, Shape{p.cout, c.size[0], c.size[1], c.size[2], p.cin}, dtype, round_to);
  } else {
    p.weight = rounded(wv, Shape{p.cout, p.cin}, dtype, round_to);
  }
  p.bias = rounded(random_values(rng, static_cast<std::size_t>(p.cout)), Shape{p.cout}, dtype, round_to);
  if (c.target) {
    I3 ts = c.in_stride;
    for (int a = 0; a < 3; ++a)
      ts[static_cast<std::size_t>(a)] = transposed(c.kind) ? ts[a] / c.stride[a] : ts[a] * c.stride[a];
    auto tc = random_coords(rng, 2, -3, 3, ts, 0.3);
    const auto tn = static_cast<std::int64_t>(tc.size());
    p.target = SparseTensor::from_coords(coords_array(tc), Array::zeros(Shape{tn, 1}, dtype),
                                         {.stride = int3(ts), .manager = p.m});
  }
  return p;
}

ops::TargetCoords target_of(const Problem& p) { return p.target ? ops::TargetCoords(*p.target) : ops::TargetCoords(); }

SparseTensor forward(const Problem& p, const SparseTensor& x, const Array& w, const std::optional<Array>& b) {
  const GradCase& c = p.c;
  switch (c.kind) {
    case Kind::conv:
      return ops::conv3d(x, w, b,
                         {.kernel_size = int3(c.size),
                          .stride = int3(c.stride),
                          .padding = int3(c.padding),
                          .dilation = int3(c.dilation),
                          .coordinates = target_of(p)});
    case Kind::subm:
      return ops::subm_conv3d(x, w, b, {.kernel_size = int3(c.size), .dilation = int3(c.dilation)});
    case Kind::transposed:
      return ops::conv_transpose3d(x, w, b,
                                   {.kernel_size = int3(c.size),
                                    .stride = int3(c.stride),
                                    .padding = int3(c.padding),
                                    .dilation = int3(c.dilation),
                                    .coordinates = target_of(p)});
    case Kind::generative:
      return ops::generative_conv_transpose3d(
          x, w, b, {.kernel_size = int3(c.size), .stride = int3(c.stride), .coordinates = target_of(p)});
    case Kind::nsubm:
      return ops::normalized_subm_conv3d(x, w, b,
                                         {.kernel_size = int3(c.size), .dilation = int3(c.dilation), .eps = 1e-3});
    case Kind::ntransposed:
      return ops::normalized_conv_transpose3d(x, w, b,
                                              {.kernel_size = int3(c.size),
                                               .stride = int3(c.stride),
                                               .padding = int3(c.padding),
                                               .dilation = int3(c.dilation),
                                               .coordinates = target_of(p),
                                               .eps = 1e-3});
    case Kind::ngenerative:
      return ops::normalized_generative_conv_transpose3d(
          x, w, b, {.kernel_size = int3(c.size), .stride = int3(c.stride), .coordinates = target_of(p), .eps = 1e-3});
    case Kind::linear:
      return ops::linear(x, w, b);
  }
  return {};
}

ConvGrads backward(const Problem& p, const SparseTensor& x, const Array& w, const SparseTensor& dy,
                   const GradRequest& need = {}) {
  const GradCase& c = p.c;
  switch (c.kind) {
    case Kind::conv:
      return ops::conv3d_backward(x, w, dy,
                                  {.kernel_size = int3(c.size),
                                   .stride = int3(c.stride),
                                   .padding = int3(c.padding),
                                   .dilation = int3(c.dilation),
                                   .coordinates = target_of(p)},
                                  need);
    case Kind::subm:
      return ops::subm_conv3d_backward(x, w, dy, {.kernel_size = int3(c.size), .dilation = int3(c.dilation)}, need);
    case Kind::transposed:
      return ops::conv_transpose3d_backward(x, w, dy,
                                            {.kernel_size = int3(c.size),
                                             .stride = int3(c.stride),
                                             .padding = int3(c.padding),
                                             .dilation = int3(c.dilation),
                                             .coordinates = target_of(p)},
                                            need);
    case Kind::generative:
      return ops::generative_conv_transpose3d_backward(
          x, w, dy, {.kernel_size = int3(c.size), .stride = int3(c.stride), .coordinates = target_of(p)}, need);
    case Kind::nsubm:
      return ops::normalized_subm_conv3d_backward(
          x, w, dy, {.kernel_size = int3(c.size), .dilation = int3(c.dilation), .eps = 1e-3}, need);
    case Kind::ntransposed:
      return ops::normalized_conv_transpose3d_backward(x, w, dy,
                                                       {.kernel_size = int3(c.size),
                                                        .stride = int3(c.stride),
                                                        .padding = int3(c.padding),
                                                        .dilation = int3(c.dilation),
                                                        .coordinates = target_of(p),
                                                        .eps = 1e-3},
                                                       need);
    case Kind::ngenerative:
      return ops::normalized_generative_conv_transpose3d_backward(
          x, w, dy, {.kernel_size = int3(c.size), .stride = int3(c.stride), .coordinates = target_of(p), .eps = 1e-3},
          need);
    case Kind::linear:
      return ops::linear_backward(x, w, dy, need);
  }
  return {};
}

// A random upstream gradient on y's support (capacity rows past the active ones are zero).
SparseTensor random_dy(const SparseTensor& y, DType dtype, DType round_to, std::uint64_t seed) {
  Rng rng(seed);
  const std::int64_t n = y.capacity(), c = y.channels();
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(n * c));
  for (std::int64_t i = y.rows() * c; i < n * c; ++i) v[static_cast<std::size_t>(i)] = 0;
  return y.replace_feats(rounded(v, Shape{n, c}, dtype, round_to));
}

double dot_rows(const SparseTensor& a, const SparseTensor& b) {
  const auto av = to_doubles(a.feats()), bv = to_doubles(b.feats());
  double s = 0;
  for (std::int64_t i = 0; i < a.rows() * a.channels(); ++i)
    s += av[static_cast<std::size_t>(i)] * bv[static_cast<std::size_t>(i)];
  return s;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Array with_value(const Array& a, std::size_t i, double v) {
  std::vector<double> vals = to_doubles(a);
  vals[i] = v;
  return make_array(vals, a.shape(), DType::f64);
}

// Per-element check of an analytic gradient against central differences of L.
void expect_fd(const std::vector<double>& got, const Array& param, const std::function<double(const Array&)>& loss,
               double h, const char* what) {
  const std::vector<double> base = to_doubles(param);
  ASSERT_EQ(got.size(), base.size()) << what;
  for (std::size_t i = 0; i < base.size(); ++i) {
    const double fd = (loss(with_value(param, i, base[i] + h)) - loss(with_value(param, i, base[i] - h))) / (2 * h);
    EXPECT_NEAR(got[i], fd, 1e-6 * (1 + std::abs(fd))) << what << " element " << i;
  }
}

const std::vector<GradCase>& cases() {
  static const std::vector<GradCase> all = [] {
    std::vector<GradCase> v;
    v.push_back({"conv_k3", Kind::conv});
    v.push_back(
        {"conv_k3_dense", Kind::conv, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, false, Layout::dense});
    v.push_back({"conv_k2_s2", Kind::conv, {2, 2, 2}, {2, 2, 2}});
    v.push_back({"conv_k3_s2_pad1", Kind::conv, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}});
    v.push_back({"conv_k3_dil2", Kind::conv, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {2, 2, 2}});
    v.push_back({"conv_k3_target", Kind::conv, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, true});
    v.push_back({"conv_pointwise",
                 Kind::conv,
                 {1, 1, 1},
                 {1, 1, 1},
                 {0, 0, 0},
                 {1, 1, 1},
                 {1, 1, 1},
                 false,
                 Layout::pointwise});
    v.push_back({"conv_pointwise_dense",
                 Kind::conv,
                 {1, 1, 1},
                 {1, 1, 1},
                 {0, 0, 0},
                 {1, 1, 1},
                 {1, 1, 1},
                 false,
                 Layout::dense});
    v.push_back({"subm_k3", Kind::subm});
    v.push_back(
        {"subm_k313_dense", Kind::subm, {3, 1, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, false, Layout::dense});
    v.push_back({"subm_k3_dil2", Kind::subm, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {2, 2, 2}});
    v.push_back({"transposed_k2_s2", Kind::transposed, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}});
    v.push_back({"transposed_k3_s2_pad1_dense",
                 Kind::transposed,
                 {3, 3, 3},
                 {2, 2, 2},
                 {1, 1, 1},
                 {1, 1, 1},
                 {2, 2, 2},
                 false,
                 Layout::dense});
    v.push_back(
        {"transposed_k2_s2_target", Kind::transposed, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}, true});
    v.push_back({"generative_k2_s2", Kind::generative, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}});
    v.push_back({"generative_k3_s1_dense",
                 Kind::generative,
                 {3, 3, 3},
                 {1, 1, 1},
                 {0, 0, 0},
                 {1, 1, 1},
                 {2, 2, 2},
                 false,
                 Layout::dense});
    v.push_back(
        {"generative_k2_s2_target", Kind::generative, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}, true});
    v.push_back({"nsubm_k3", Kind::nsubm});
    v.push_back(
        {"nsubm_k3_dense", Kind::nsubm, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, false, Layout::dense});
    v.push_back({"ntransposed_k2_s2", Kind::ntransposed, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}});
    v.push_back(
        {"ntransposed_k3_s2_target", Kind::ntransposed, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, {2, 2, 2}, true});
    v.push_back({"ngenerative_k2_s2", Kind::ngenerative, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}});
    v.push_back({"ngenerative_k2_s2_target_dense",
                 Kind::ngenerative,
                 {2, 2, 2},
                 {2, 2, 2},
                 {0, 0, 0},
                 {1, 1, 1},
                 {2, 2, 2},
                 true,
                 Layout::dense});
    v.push_back(
        {"linear", Kind::linear, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, false, Layout::pointwise});
    return v;
  }();
  return all;
}

class ConvGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(ConvGrad, MatchesFiniteDifferences) {
  const Problem p = make_problem(GetParam(), DType::f64, DType::f64);
  ASSERT_GT(p.x.rows(), 0);
  const SparseTensor y = forward(p, p.x, p.weight, p.bias);
  const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 11);
  const auto before = to_doubles(p.x.feats());
  const ConvGrads g = backward(p, p.x, p.weight, dy);
  ASSERT_TRUE(g.input && g.weight && g.bias);
  EXPECT_EQ(to_doubles(p.x.feats()), before);  // inputs are never mutated
  EXPECT_EQ(g.input->key(), p.x.key());
  EXPECT_EQ(g.weight->shape(), p.weight.shape());
  const double h = normalized(p.c.kind) ? 1e-5 : 1e-3;
  auto loss_x = [&](const Array& f) { return dot_rows(forward(p, p.x.replace_feats(f), p.weight, p.bias), dy); };
  auto loss_w = [&](const Array& w) { return dot_rows(forward(p, p.x, w, p.bias), dy); };
  auto loss_b = [&](const Array& b) { return dot_rows(forward(p, p.x, p.weight, b), dy); };
  expect_fd(to_doubles(g.input->feats()), p.x.feats(), loss_x, h, "dx");
  expect_fd(to_doubles(*g.weight), p.weight, loss_w, h, "dW");
  expect_fd(to_doubles(*g.bias), p.bias, loss_b, h, "db");
}

TEST_P(ConvGrad, AdjointIdentity) {
  if (normalized(GetParam().kind)) GTEST_SKIP() << "normalized forms are not linear in W";
  const Problem p = make_problem(GetParam(), DType::f64, DType::f64);
  const SparseTensor y = forward(p, p.x, p.weight, std::nullopt);
  const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 13);
  const ConvGrads g = backward(p, p.x, p.weight, dy);
  const double lhs = dot_rows(y, dy);
  const double scale = 1 + std::abs(lhs);
  EXPECT_NEAR(dot(to_doubles(g.input->feats()), to_doubles(p.x.feats())), lhs, 1e-10 * scale);
  EXPECT_NEAR(dot(to_doubles(*g.weight), to_doubles(p.weight)), lhs, 1e-10 * scale);
}

Array abs64(const Array& a) {
  std::vector<double> v = to_doubles(a);
  for (double& e : v) e = std::abs(e);
  return make_array(v, a.shape(), DType::f64);
}

TEST_P(ConvGrad, LowPrecisionMatchesFloat64) {
  const bool norm = normalized(GetParam().kind);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    const Problem lo = make_problem(GetParam(), dtype, dtype);
    const Problem ref = make_problem(GetParam(), DType::f64, dtype);
    const SparseTensor ylo = forward(lo, lo.x, lo.weight, lo.bias);
    const SparseTensor yref = forward(ref, ref.x, ref.weight, ref.bias);
    const SparseTensor dyref = random_dy(yref, DType::f64, dtype, 17);
    const ConvGrads glo = backward(lo, lo.x, lo.weight, random_dy(ylo, dtype, dtype, 17));
    const ConvGrads gref = backward(ref, ref.x, ref.weight, dyref);
    // SPEC §12 magnitudes for the linear forms: the same VJP on |x|, |W|, |dy|
    // gives sum |dy||W| (dx), sum |x||dy| (dW), sum |dy| (db). The normalized
    // forms (not linear in W) use the largest reference element, 4x the tolerance.
    ConvGrads mag;
    if (!norm) {
      mag = backward(ref, ref.x.replace_feats(abs64(ref.x.feats())), abs64(ref.weight),
                     dyref.replace_feats(abs64(dyref.feats())));
    }
    auto check = [&](const Array& got, const Array& want, const std::optional<Array>& m, std::size_t columns,
                     const char* what) {
      const auto w = to_doubles(want);
      std::vector<double> mv;
      if (m) {
        mv = to_doubles(*m);
      } else {
        double mx = 1e-300;
        for (double v : w) mx = std::max(mx, std::abs(v));
        mv.assign(w.size(), mx);
      }
      const double tol = (norm ? 4 : 1) * tolerance_for(dtype);
      EXPECT_EQ(compare_elements(to_doubles(got), w, mv, tol, columns), "") << what;
    };
    EXPECT_EQ(glo.weight->dtype(), dtype);
    EXPECT_EQ(glo.bias->dtype(), dtype);
    check(glo.input->feats(), gref.input->feats(), norm ? std::nullopt : std::optional<Array>(mag.input->feats()),
          static_cast<std::size_t>(lo.cin), "dx");
    check(*glo.weight, *gref.weight, mag.weight, 1, "dW");
    check(*glo.bias, *gref.bias, mag.bias, 1, "db");
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, ConvGrad, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<GradCase>& info) { return info.param.name; });

// ---- edge cases ----------------------------------------------------------------------

TEST(ConvGradEdges, EmptyTensor) {
  for (const GradCase& c : cases()) {
    SCOPED_TRACE(c.name);
    if (c.target) continue;
    const Problem p = make_problem(c, DType::f32, DType::f32, -1);
    ASSERT_EQ(p.x.rows(), 0);
    const SparseTensor y = forward(p, p.x, p.weight, p.bias);
    const ConvGrads g = backward(p, p.x, p.weight, y.replace_feats(Array::zeros(y.feats().shape(), DType::f32)));
    EXPECT_EQ(g.input->feats().dim(0), p.x.capacity());
    for (double v : to_doubles(*g.weight)) EXPECT_EQ(v, 0.0);
    for (double v : to_doubles(*g.bias)) EXPECT_EQ(v, 0.0);
  }
}

TEST(ConvGradEdges, OneRowSubmIsTheCentreProduct) {
  GradCase c{"subm_one", Kind::subm};
  const Problem p = make_problem(c, DType::f64, DType::f64, 1);
  ASSERT_EQ(p.x.rows(), 1);
  const SparseTensor y = forward(p, p.x, p.weight, p.bias);
  const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 3);
  const ConvGrads g = backward(p, p.x, p.weight, dy);
  const auto w = to_doubles(p.weight), x = to_doubles(p.x.feats()), d = to_doubles(dy.feats());
  const int centre = 13;
  for (int ci = 0; ci < p.cin; ++ci) {
    double s = 0;
    for (int co = 0; co < p.cout; ++co) s += d[co] * w[(centre * p.cin + ci) * p.cout + co];
    EXPECT_NEAR(to_doubles(g.input->feats())[ci], s, 1e-14);
  }
  const auto dw = to_doubles(*g.weight);
  for (int k = 0; k < 27; ++k)
    for (int ci = 0; ci < p.cin; ++ci)
      for (int co = 0; co < p.cout; ++co)
        EXPECT_EQ(dw[(k * p.cin + ci) * p.cout + co], k == centre ? x[ci] * d[co] : 0.0);
}

TEST(ConvGradEdges, RequestSubsets) {
  const Problem p = make_problem(cases()[0], DType::f64, DType::f64);
  const SparseTensor y = forward(p, p.x, p.weight, p.bias);
  const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 5);
  const ConvGrads all = backward(p, p.x, p.weight, dy);
  const ConvGrads w = backward(p, p.x, p.weight, dy, {.input = false, .weight = true, .bias = false});
  EXPECT_FALSE(w.input);
  EXPECT_FALSE(w.bias);
  ASSERT_TRUE(w.weight);
  EXPECT_EQ(to_doubles(*w.weight), to_doubles(*all.weight));
  const ConvGrads none = backward(p, p.x, p.weight, dy, {.input = false, .weight = false, .bias = false});
  EXPECT_FALSE(none.input || none.weight || none.bias);
  const ConvGrads xb = backward(p, p.x, p.weight, dy, {.input = true, .weight = false, .bias = true});
  EXPECT_FALSE(xb.weight);
  EXPECT_EQ(to_doubles(xb.input->feats()), to_doubles(all.input->feats()));
  EXPECT_EQ(to_doubles(*xb.bias), to_doubles(*all.bias));
}

TEST(ConvGradEdges, RunToRunBitwise) {
  for (const GradCase& c : cases()) {
    SCOPED_TRACE(c.name);
    const Problem p = make_problem(c, DType::f32, DType::f32);
    const SparseTensor y = forward(p, p.x, p.weight, p.bias);
    const SparseTensor dy = random_dy(y, DType::f32, DType::f32, 9);
    const ConvGrads a = backward(p, p.x, p.weight, dy);
    const ConvGrads b = backward(p, p.x, p.weight, dy);
    EXPECT_EQ(to_doubles(a.input->feats()), to_doubles(b.input->feats()));
    EXPECT_EQ(to_doubles(*a.weight), to_doubles(*b.weight));
    EXPECT_EQ(to_doubles(*a.bias), to_doubles(*b.bias));
  }
}

TEST(ConvGradEdges, PointwiseWithForcedRouteMatchesMatmulPath) {
  // A pointwise conv3d forced off the matmul route runs on a relation; the
  // backward follows the forward's rule and gives the same gradients.
  GradCase c{"pw_route", Kind::conv, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, false, Layout::pointwise};
  const Problem p = make_problem(c, DType::f64, DType::f64);
  const ops::Conv3dParams routed{.kernel_size = Int3{1}, .route = ops::ConvRoute::gather_gemm_scatter};
  const SparseTensor y = ops::conv3d(p.x, p.weight, std::nullopt, routed);
  const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 21);
  const ConvGrads g = ops::conv3d_backward(p.x, p.weight, dy, routed);
  const ConvGrads h = ops::conv3d_backward(p.x, p.weight, dy, {.kernel_size = Int3{1}});
  const auto a = to_doubles(*g.weight), b = to_doubles(*h.weight);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12);
  const auto ax = to_doubles(g.input->feats()), bx = to_doubles(h.input->feats());
  for (std::size_t i = 0; i < ax.size(); ++i) EXPECT_NEAR(ax[i], bx[i], 1e-12);
}

TEST(ConvGradEdges, EvictedRelationIsRebuiltForDy) {
  for (const GradCase& c : cases()) {
    if (c.kind == Kind::subm || c.kind == Kind::nsubm || c.kind == Kind::linear) continue;
    if (c.target || c.size[0] == 1) continue;
    SCOPED_TRACE(c.name);
    const Problem p = make_problem(c, DType::f64, DType::f64);
    const SparseTensor y = forward(p, p.x, p.weight, p.bias);
    const SparseTensor dy = random_dy(y, DType::f64, DType::f64, 23);
    const ConvGrads before = backward(p, p.x, p.weight, dy);
    p.m->clear_cache();
    const ConvGrads after = backward(p, p.x, p.weight, dy);
    EXPECT_EQ(to_doubles(after.input->feats()), to_doubles(before.input->feats()));
    EXPECT_EQ(to_doubles(*after.weight), to_doubles(*before.weight));
  }
}

// ---- errors --------------------------------------------------------------------------

TEST(ConvGradErrors, EpilogueIsRejected) {
  const Problem p = make_problem(cases()[0], DType::f32, DType::f32);
  const SparseTensor y = ops::conv3d(p.x, p.weight);
  ops::Conv3dParams params;
  params.epilogue.relu = true;
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight, y, params); },
                           {"[conv3d_backward]", "'params.epilogue'", "no VJP"});
  ops::SubmConv3dParams sp;
  sp.epilogue.scale = Array::full(Shape{p.cout}, DType::f32, 1.0);
  const SparseTensor ys = ops::subm_conv3d(p.x, p.weight);
  expect_error<ValueError>(p.m, [&] { ops::subm_conv3d_backward(p.x, p.weight, ys, sp); },
                           {"[subm_conv3d_backward]", "'params.epilogue'"});
}

TEST(ConvGradErrors, DyChecks) {
  GradCase c{"conv_s2", Kind::conv, {2, 2, 2}, {2, 2, 2}};
  const Problem p = make_problem(c, DType::f32, DType::f32);
  const ops::Conv3dParams params{.kernel_size = Int3{2}, .stride = Int3{2}};
  const SparseTensor y = ops::conv3d(p.x, p.weight, std::nullopt, params);
  // dy on the input's key instead of the output's.
  const SparseTensor wrong = p.x.replace_feats(Array::zeros(Shape{p.x.capacity(), p.cout}, DType::f32));
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight, wrong, params); },
                           {"[conv3d_backward]", "'dy'", "coordinate key"});
  expect_error<ValueError>(
      p.m,
      [&] {
        ops::conv3d_backward(p.x, p.weight, y.replace_feats(Array::zeros(Shape{y.capacity(), 5}, DType::f32)), params);
      },
      {"[conv3d_backward]", "'dy'", "5 channels"});
  expect_error<TypeError>(
      p.m, [&] { ops::conv3d_backward(p.x, p.weight, y.replace_feats(y.feats().astype(DType::f64)), params); },
      {"[conv3d_backward]", "'dy'", "dtype"});
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight, SparseTensor(), params); },
                           {"[conv3d_backward]", "'dy'"});
  // dy from another manager.
  const Problem other = make_problem(c, DType::f32, DType::f32);
  const SparseTensor yo = ops::conv3d(other.x, other.weight, std::nullopt, params);
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight, yo, params); },
                           {"[conv3d_backward]", "'dy'", "manager"});
}

TEST(ConvGradErrors, WeightAndInputChecks) {
  const Problem p = make_problem(cases()[0], DType::f32, DType::f32);
  const SparseTensor y = ops::conv3d(p.x, p.weight);
  expect_error<ValueError>(p.m,
                           [&] {
                             ops::conv3d_backward(p.x, Array::zeros(Shape{27, 5, 3}, DType::f32), y);
                           },
                           {"[conv3d_backward]", "'weight'"});
  expect_error<TypeError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight.astype(DType::f64), y); },
                          {"[conv3d_backward]", "'weight'"});
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(SparseTensor(), p.weight, y); },
                           {"[conv3d_backward]", "'x'"});
  expect_error<ValueError>(p.m, [&] { ops::conv3d_backward(p.x, p.weight, y, {.kernel_size = Int3{0}}); },
                           {"[conv3d_backward]"});
  expect_error<ValueError>(
      p.m,
      [&] {
        ops::subm_conv3d_backward(p.x, Array::zeros(Shape{8, 2, 3}, DType::f32), y, {.kernel_size = Int3{2}});
      },
      {"[subm_conv3d_backward]", "'kernel_size'", "odd"});
  const SparseTensor yl = ops::linear(p.x, Array::zeros(Shape{3, 2}, DType::f32));
  expect_error<ValueError>(p.m, [&] { ops::linear_backward(p.x, p.weight, yl); },
                           {"[linear_backward]", "'weight'", "(C_out, C_in)"});
}

TEST(ConvGradErrors, NormalizedEpsAndTargets) {
  GradCase c{"nsubm", Kind::nsubm};
  const Problem p = make_problem(c, DType::f32, DType::f32);
  const SparseTensor y = ops::normalized_subm_conv3d(p.x, p.weight);
  expect_error<ValueError>(p.m, [&] { ops::normalized_subm_conv3d_backward(p.x, p.weight, y, {.eps = -1}); },
                           {"[normalized_subm_conv3d_backward]", "'eps'"});
  // Target given as a tensor, dy on another support.
  GradCase t{"tt", Kind::transposed, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}, true};
  const Problem q = make_problem(t, DType::f32, DType::f32);
  const SparseTensor yt = ops::conv_transpose3d(q.x, q.weight);  // no target: its own support
  expect_error<ValueError>(q.m, [&] { ops::conv_transpose3d_backward(q.x, q.weight, yt, {.coordinates = *q.target}); },
                           {"[conv_transpose3d_backward]", "'dy'", "coordinate key"});
}

}  // namespace
}  // namespace lattice::testing
