// VJPs of the feature ops, norms, sparse algebra, cat and row subsets (SPEC
// §13). Every VJP against central finite differences of its forward in
// float64 (per element), linear maps against the adjoint identity
// <dy, L(x)> = <L*(dy), x>, 16-bit and float32 against the float64 VJP of the
// same (rounded) inputs with SPEC §12 tolerances, empty and one-row tensors,
// batch > 0 and negative coordinates, and every error path.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/algebra.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/features_grad.hpp"
#include "lattice/ops/rows.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using Manager = std::shared_ptr<CoordinateManager>;
using Fwd = std::function<SparseTensor(const SparseTensor&)>;

constexpr double k_garbage = 1e30;
constexpr DType k_low[] = {DType::f32, DType::f16, DType::bf16};

// Coordinate i of a pool shared by the operands of one test: three batch
// items, negative and large values. Capacity rows get coordinates outside it.
Coord pool_coord(int i) { return {i % 3, i - 40, -2 * i, 1000 - 3 * i}; }

// `rows` active rows at pool coordinates `ids` plus `extra` garbage capacity rows.
SparseTensor make_tensor(const Manager& m, const std::vector<int>& ids, const std::vector<double>& values, int channels,
                         DType dtype, std::int64_t extra = 2, Int3 stride = Int3{1}) {
  const auto rows = static_cast<std::int64_t>(ids.size());
  std::vector<Coord> coords;
  for (int id : ids) {
    Coord c = pool_coord(id);
    for (int a = 1; a < 4; ++a) c[static_cast<std::size_t>(a)] *= stride[a - 1];
    coords.push_back(c);
  }
  for (std::int64_t i = 0; i < extra; ++i) coords.push_back({0, 5000 + static_cast<int>(i), 0, 0});
  std::vector<double> all = values;
  all.resize(static_cast<std::size_t>((rows + extra) * channels), k_garbage);
  return SparseTensor::from_coords(coords_array(coords), make_array(all, Shape{rows + extra, channels}, dtype),
                                   {.stride = stride, .manager = m, .active_rows = rows});
}

std::vector<int> iota_ids(int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = first + i;
  return v;
}

// Values as the dtype stores them.
std::vector<double> rounded(const std::vector<double>& v, DType dtype) {
  return to_doubles(make_array(v, Shape{static_cast<std::int64_t>(v.size())}, dtype));
}

// The active elements of a tensor, as doubles.
std::vector<double> active(const SparseTensor& t) {
  const auto all = to_doubles(t.feats().to(Device::cpu()));
  return {all.begin(), all.begin() + static_cast<std::ptrdiff_t>(t.rows() * t.channels())};
}

// Checks that capacity rows of a gradient are zero.
void expect_zero_tail(const SparseTensor& g) {
  const auto all = to_doubles(g.feats());
  for (std::size_t i = static_cast<std::size_t>(g.rows() * g.channels()); i < all.size(); ++i)
    ASSERT_EQ(all[i], 0.0) << "capacity element " << i;
}

// x with active element i set to v (same key).
SparseTensor with_element(const SparseTensor& x, std::size_t i, double v) {
  auto all = to_doubles(x.feats());
  all[i] = v;
  return x.replace_feats(make_array(all, x.feats().shape(), x.dtype()));
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of L(x) = <dy, f(x)> over the active elements of x
// (float64; the output rows of f come in the same order for every x).
std::vector<double> fd_grad(const SparseTensor& x, const Fwd& f, const std::vector<double>& dy, double h = 1e-6) {
  const auto base = active(x);
  std::vector<double> g(base.size());
  for (std::size_t i = 0; i < base.size(); ++i) {
    const double lp = dot(dy, active(f(with_element(x, i, base[i] + h))));
    const double lm = dot(dy, active(f(with_element(x, i, base[i] - h))));
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

// Same for a (C,) parameter array.
std::vector<double> fd_param(const Array& p, const std::function<SparseTensor(const Array&)>& f,
                             const std::vector<double>& dy, double h = 1e-6) {
  auto base = to_doubles(p);
  std::vector<double> g(base.size());
  for (std::size_t i = 0; i < base.size(); ++i) {
    auto v = base;
    v[i] = base[i] + h;
    const double lp = dot(dy, active(f(make_array(v, p.shape(), p.dtype()))));
    v[i] = base[i] - h;
    const double lm = dot(dy, active(f(make_array(v, p.shape(), p.dtype()))));
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

// |got - want| <= tol * max(|want|, floor) per element.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol, double floor = 1.0) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol * std::max(std::abs(want[i]), floor)) << "element " << i;
  }
}

// Low-precision result against the float64 one: tolerance scaled by the
// largest magnitude of the float64 result (SPEC §12 style).
void expect_dtype_close(const std::vector<double>& got, const std::vector<double>& want, DType dtype) {
  double scale = 1e-30;
  for (double v : want) scale = std::max(scale, std::abs(v));
  const double tol = tolerance_for(dtype) * 4;
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol * std::max(std::abs(want[i]), 0.1 * scale)) << "element " << i;
  }
}

SparseTensor astype(const SparseTensor& x, DType dtype) { return x.replace_feats(x.feats().astype(dtype)); }

// ---- activations -----------------------------------------------------------------

using ops::ActivationKind;
constexpr ActivationKind k_kinds[] = {ActivationKind::relu,      ActivationKind::leaky_relu, ActivationKind::gelu,
                                      ActivationKind::gelu_tanh, ActivationKind::silu,       ActivationKind::sigmoid,
                                      ActivationKind::tanh,      ActivationKind::softplus};

// Values in [-3, 3] away from 0 (the relu kinks), and a few past softplus's threshold.
std::vector<double> activation_values(Rng& rng, std::size_t n) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    double u = rng.uniform(0.05, 3.0) * (rng.uniform(0, 1) < 0.5 ? -1 : 1);
    if (i % 7 == 3) u = 20.5 + static_cast<double>(i % 3);
    v[i] = u;
  }
  return v;
}

TEST(ActivationBackward, MatchesFiniteDifferences) {
  int seed = 0;
  for (ActivationKind kind : k_kinds) {
    for (int rows : {1, 9}) {
      for (int c : {1, 4}) {
        SCOPED_TRACE("kind " + std::to_string(static_cast<int>(kind)) + " rows " + std::to_string(rows));
        Rng rng(static_cast<std::uint64_t>(++seed));
        const auto m = CoordinateManager::create();
        const auto x =
            make_tensor(m, iota_ids(rows), activation_values(rng, static_cast<std::size_t>(rows * c)), c, DType::f64);
        const auto dyv = random_values(rng, static_cast<std::size_t>(rows * c));
        const auto dy = x.replace_feats(make_array(
            [&] {
              auto v = dyv;
              v.resize(static_cast<std::size_t>(x.capacity() * c), 7.0);
              return v;
            }(),
            x.feats().shape(), DType::f64));
        const ops::ActivationParams params{kind, 0.13};
        const auto dx = ops::activation_backward(x, dy, params);
        EXPECT_EQ(dx.key(), x.key());
        expect_zero_tail(dx);
        const auto fd = fd_grad(
            x, [&](const SparseTensor& t) { return ops::activation(t, params); }, dyv);
        expect_close(active(dx), fd, 1e-6);
      }
    }
  }
}

TEST(ActivationBackward, LowPrecisionMatchesFloat64) {
  Rng rng(11);
  for (DType dtype : k_low) {
    for (ActivationKind kind : k_kinds) {
      const auto m = CoordinateManager::create();
      const int rows = 23, c = 5;
      const auto xv = rounded(activation_values(rng, rows * c), dtype);
      const auto gv = rounded(random_values(rng, rows * c), dtype);
      const auto x = make_tensor(m, iota_ids(rows), xv, c, dtype);
      auto gall = gv;
      gall.resize(static_cast<std::size_t>(x.capacity() * c), 0.0);
      const auto dyc = x.replace_feats(make_array(gall, x.feats().shape(), dtype));
      const ops::ActivationParams params{kind, 0.2};
      const auto got = ops::activation_backward(x, dyc, params);
      const auto want = ops::activation_backward(astype(x, DType::f64), astype(dyc, DType::f64), params);
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " kind " + std::to_string(static_cast<int>(kind)));
      expect_dtype_close(active(got), active(want), dtype);
      expect_zero_tail(got);
    }
  }
}

TEST(ActivationBackward, ReluIsZeroAtAndBelowZero) {
  const auto m = CoordinateManager::create();
  const auto x = make_tensor(m, iota_ids(3), {-1.0, 0.0, 2.0}, 1, DType::f32, 0);
  const auto dy = x.replace_feats(make_array({5.0, 5.0, 5.0}, Shape{3, 1}, DType::f32));
  EXPECT_EQ(active(ops::activation_backward(x, dy, {ActivationKind::relu})), (std::vector<double>{0, 0, 5}));
  const auto leaky = active(ops::activation_backward(x, dy, {ActivationKind::leaky_relu, 0.5}));
  EXPECT_EQ(leaky, (std::vector<double>{2.5, 2.5, 5}));
}

TEST(ActivationBackward, EmptyTensor) {
  const auto m = CoordinateManager::create();
  const auto x = make_tensor(m, {}, {}, 3, DType::f32, 4);
  const auto dx = ops::activation_backward(x, x, {ActivationKind::gelu});
  EXPECT_EQ(dx.rows(), 0);
  expect_zero_tail(dx);
  const auto none = make_tensor(m, {}, {}, 2, DType::f32, 0);
  EXPECT_EQ(ops::activation_backward(none, none, {}).capacity(), 0);
}

// ---- dropout -----------------------------------------------------------------------

TEST(DropoutBackward, AdjointIdentityAndForwardMask) {
  Rng rng(3);
  for (DType dtype : {DType::f64, DType::f32, DType::f16}) {
    for (double p : {0.0, 0.3, 0.9}) {
      for (bool training : {true, false}) {
        const auto m = CoordinateManager::create();
        const int rows = 31, c = 6;
        const auto x = make_tensor(m, iota_ids(rows), rounded(random_values(rng, rows * c), dtype), c, dtype);
        auto gv = rounded(random_values(rng, rows * c), dtype);
        gv.resize(static_cast<std::size_t>(x.capacity() * c), 0.0);
        const auto dy = x.replace_feats(make_array(gv, x.feats().shape(), dtype));
        const ops::DropoutParams params{p, 1234, training};
        const auto dx = ops::dropout_backward(dy, params);
        expect_zero_tail(dx);
        const auto y = ops::dropout(x, params);
        const double lhs = dot(active(dy), active(y)), rhs = dot(active(dx), active(x));
        EXPECT_NEAR(lhs, rhs, (dtype == DType::f64 ? 1e-10 : 1e-2) * std::max(1.0, std::abs(lhs)));
        // The same elements are dropped: dx is zero exactly where y is.
        const auto ya = active(y), da = active(dx), xa = active(x), g = active(dy);
        for (std::size_t i = 0; i < ya.size(); ++i) {
          if (xa[i] != 0 && g[i] != 0) EXPECT_EQ(ya[i] == 0, da[i] == 0) << i;
        }
        if (!training || p == 0) EXPECT_EQ(da, g);
      }
    }
  }
}

// ---- norms -----------------------------------------------------------------------------

struct NormCase {
  int rows, c;
  bool weight, bias;
};

TEST(LayerNormBackward, MatchesFiniteDifferences) {
  int seed = 100;
  for (const NormCase nc : {NormCase{1, 3, true, true}, NormCase{7, 5, true, false}, NormCase{5, 1, false, true},
                            NormCase{9, 4, false, false}}) {
    for (bool rms : {false, true}) {
      SCOPED_TRACE("rows " + std::to_string(nc.rows) + " c " + std::to_string(nc.c) + " rms " + std::to_string(rms));
      Rng rng(static_cast<std::uint64_t>(++seed));
      const auto m = CoordinateManager::create();
      const auto x = make_tensor(m, iota_ids(nc.rows), random_values(rng, nc.rows * nc.c), nc.c, DType::f64);
      auto gv = random_values(rng, nc.rows * nc.c);
      const auto dyv = gv;
      gv.resize(static_cast<std::size_t>(x.capacity() * nc.c), 3.0);
      const auto dy = x.replace_feats(make_array(gv, x.feats().shape(), DType::f64));
      std::optional<Array> w, b;
      if (nc.weight) w = make_array(random_values(rng, nc.c), Shape{nc.c}, DType::f64);
      if (nc.bias && !rms) b = make_array(random_values(rng, nc.c), Shape{nc.c}, DType::f64);
      const double eps = 1e-3;
      auto fwd = [&](const SparseTensor& t, const std::optional<Array>& ww, const std::optional<Array>& bb) {
        return rms ? ops::rms_norm(t, {ww, eps}) : ops::layer_norm(t, {ww, bb, eps});
      };
      const auto g = rms ? ops::rms_norm_backward(x, dy, {w, eps}) : ops::layer_norm_backward(x, dy, {w, b, eps});
      expect_zero_tail(g.input);
      expect_close(active(g.input),
                   fd_grad(
                       x, [&](const SparseTensor& t) { return fwd(t, w, b); }, dyv),
                   1e-6);
      ASSERT_EQ(g.weight.has_value(), w.has_value());
      ASSERT_EQ(g.bias.has_value(), b.has_value());
      if (w) {
        expect_close(to_doubles(*g.weight),
                     fd_param(
                         *w, [&](const Array& a) { return fwd(x, a, b); }, dyv),
                     1e-6);
      }
      if (b) {
        expect_close(to_doubles(*g.bias),
                     fd_param(
                         *b, [&](const Array& a) { return fwd(x, w, a); }, dyv),
                     1e-6);
      }
    }
  }
}

TEST(LayerNormBackward, LowPrecisionMatchesFloat64) {
  Rng rng(7);
  for (DType dtype : k_low) {
    for (bool rms : {false, true}) {
      const auto m = CoordinateManager::create();
      const int rows = 19, c = 16;
      const auto x = make_tensor(m, iota_ids(rows), rounded(random_values(rng, rows * c), dtype), c, dtype);
      auto gv = rounded(random_values(rng, rows * c), dtype);
      gv.resize(static_cast<std::size_t>(x.capacity() * c), 0.0);
      const auto dy = x.replace_feats(make_array(gv, x.feats().shape(), dtype));
      const Array w = make_array(rounded(random_values(rng, c), dtype), Shape{c}, dtype);
      const Array b = make_array(rounded(random_values(rng, c), dtype), Shape{c}, dtype);
      const auto w64 = w.astype(DType::f64), b64 = b.astype(DType::f64);
      const auto got = rms ? ops::rms_norm_backward(x, dy, {w}) : ops::layer_norm_backward(x, dy, {w, b});
      const auto x64 = astype(x, DType::f64), dy64 = astype(dy, DType::f64);
      const auto want =
          rms ? ops::rms_norm_backward(x64, dy64, {w64}) : ops::layer_norm_backward(x64, dy64, {w64, b64});
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " rms " + std::to_string(rms));
      expect_dtype_close(active(got.input), active(want.input), dtype);
      expect_dtype_close(to_doubles(*got.weight), to_doubles(*want.weight), dtype);
      if (!rms) expect_dtype_close(to_doubles(*got.bias), to_doubles(*want.bias), dtype);
      EXPECT_EQ(got.weight->dtype(), dtype);
    }
  }
}

TEST(BatchNormBackward, MatchesFiniteDifferences) {
  int seed = 200;
  for (bool training : {true, false}) {
    for (const NormCase nc : {NormCase{2, 3, true, true}, NormCase{11, 4, true, false}, NormCase{6, 2, false, true},
                              NormCase{5, 1, false, false}}) {
      SCOPED_TRACE("training " + std::to_string(training) + " rows " + std::to_string(nc.rows));
      Rng rng(static_cast<std::uint64_t>(++seed));
      const auto m = CoordinateManager::create();
      const auto x = make_tensor(m, iota_ids(nc.rows), random_values(rng, nc.rows * nc.c), nc.c, DType::f64);
      auto gv = random_values(rng, nc.rows * nc.c);
      const auto dyv = gv;
      gv.resize(static_cast<std::size_t>(x.capacity() * nc.c), -2.0);
      const auto dy = x.replace_feats(make_array(gv, x.feats().shape(), DType::f64));
      ops::BatchNormArgs args;
      if (nc.weight) args.weight = make_array(random_values(rng, nc.c), Shape{nc.c}, DType::f64);
      if (nc.bias) args.bias = make_array(random_values(rng, nc.c), Shape{nc.c}, DType::f64);
      std::vector<double> var(static_cast<std::size_t>(nc.c));
      for (double& v : var) v = rng.uniform(0.5, 2.0);
      args.running_mean = make_array(random_values(rng, nc.c), Shape{nc.c}, DType::f32);
      args.running_var = make_array(var, Shape{nc.c}, DType::f32);
      args.training = training;
      args.eps = 1e-3;
      const auto g = ops::batch_norm_backward(x, dy, args);
      expect_zero_tail(g.input);
      auto fwd = [&](const SparseTensor& t, const ops::BatchNormArgs& a) { return ops::batch_norm(t, a).output; };
      expect_close(active(g.input),
                   fd_grad(
                       x, [&](const SparseTensor& t) { return fwd(t, args); }, dyv),
                   1e-6);
      ASSERT_EQ(g.weight.has_value(), nc.weight);
      ASSERT_EQ(g.bias.has_value(), nc.bias);
      if (nc.weight) {
        const auto fd = fd_param(
            *args.weight,
            [&](const Array& a) {
              auto b = args;
              b.weight = a;
              return fwd(x, b);
            },
            dyv);
        expect_close(to_doubles(*g.weight), fd, 1e-6);
      }
      if (nc.bias) {
        const auto fd = fd_param(
            *args.bias,
            [&](const Array& a) {
              auto b = args;
              b.bias = a;
              return fwd(x, b);
            },
            dyv);
        expect_close(to_doubles(*g.bias), fd, 1e-6);
      }
    }
  }
}

TEST(BatchNormBackward, LowPrecisionAndFloat32Parameters) {
  Rng rng(9);
  for (DType dtype : k_low) {
    const auto m = CoordinateManager::create();
    const int rows = 40, c = 6;
    const auto x = make_tensor(m, iota_ids(rows), rounded(random_values(rng, rows * c), dtype), c, dtype);
    auto gv = rounded(random_values(rng, rows * c), dtype);
    gv.resize(static_cast<std::size_t>(x.capacity() * c), 0.0);
    const auto dy = x.replace_feats(make_array(gv, x.feats().shape(), dtype));
    ops::BatchNormArgs args;
    args.weight = make_array(random_values(rng, c), Shape{c}, DType::f32);  // float32 parameters
    args.bias = make_array(random_values(rng, c), Shape{c}, DType::f32);
    args.running_mean = Array::zeros(Shape{c}, DType::f32, Device::cpu());
    args.running_var = Array::full(Shape{c}, DType::f32, 1.0, Device::cpu());
    args.training = true;
    const auto got = ops::batch_norm_backward(x, dy, args);
    const auto want = ops::batch_norm_backward(astype(x, DType::f64), astype(dy, DType::f64), args);
    SCOPED_TRACE(dtype_name(dtype));
    expect_dtype_close(active(got.input), active(want.input), dtype);
    EXPECT_EQ(got.weight->dtype(), DType::f32);
    expect_dtype_close(to_doubles(*got.weight), to_doubles(*want.weight), DType::f32);
    expect_dtype_close(to_doubles(*got.bias), to_doubles(*want.bias), DType::f32);
  }
}

TEST(NormBackward, EmptyTensors) {
  const auto m = CoordinateManager::create();
  const auto x = make_tensor(m, {}, {}, 3, DType::f32, 2);
  const Array w = Array::full(Shape{3}, DType::f32, 2.0, Device::cpu());
  const auto ln = ops::layer_norm_backward(x, x, {w, w});
  expect_zero_tail(ln.input);
  EXPECT_EQ(to_doubles(*ln.weight), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(to_doubles(*ln.bias), (std::vector<double>{0, 0, 0}));
  ops::BatchNormArgs args{w, w, Array::zeros(Shape{3}, DType::f32, Device::cpu()), w};
  const auto bn = ops::batch_norm_backward(x, x, args);
  expect_zero_tail(bn.input);
  EXPECT_EQ(to_doubles(*bn.bias), (std::vector<double>{0, 0, 0}));
}

// ---- cat ---------------------------------------------------------------------------------

TEST(CatBackward, ChannelSplitAndAdjoint) {
  Rng rng(5);
  for (DType dtype : {DType::f64, DType::f16}) {
    for (auto [ca, cb] : {std::pair{3, 2}, std::pair{1, 7}, std::pair{4, 0}}) {
      for (int rows : {0, 1, 13}) {
        const auto m = CoordinateManager::create();
        const auto a = make_tensor(m, iota_ids(rows), rounded(random_values(rng, rows * ca), dtype), ca, dtype);
        const auto b = a.replace_feats(make_array(random_values(rng, static_cast<std::size_t>(a.capacity() * cb)),
                                                  Shape{a.capacity(), cb}, dtype));
        const int c = ca + cb;
        const auto dy = a.replace_feats(
            make_array(random_values(rng, static_cast<std::size_t>(a.capacity() * c)), Shape{a.capacity(), c}, dtype));
        const auto [ga, gb] = ops::cat_backward(a, b, dy);
        EXPECT_EQ(ga.key(), a.key());
        EXPECT_EQ(gb.channels(), cb);
        expect_zero_tail(ga);
        expect_zero_tail(gb);
        const auto d = active(dy), va = active(ga), vb = active(gb);
        for (int r = 0; r < rows; ++r) {
          for (int j = 0; j < c; ++j) {
            const double got =
                j < ca ? va[static_cast<std::size_t>(r * ca + j)] : vb[static_cast<std::size_t>(r * cb + j - ca)];
            ASSERT_EQ(got, d[static_cast<std::size_t>(r * c + j)]);
          }
        }
        if (dtype == DType::f64) {
          const double lhs = dot(d, active(ops::cat(a, b)));
          const double rhs = dot(va, active(a)) + dot(vb, active(b));
          EXPECT_NEAR(lhs, rhs, 1e-10 * std::max(1.0, std::abs(lhs)));
        }
      }
    }
  }
}

// ---- sparse algebra -------------------------------------------------------------------

using ops::BinaryOp;
using ops::Join;
constexpr BinaryOp k_ops[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::maximum, BinaryOp::minimum};
constexpr Join k_joins[] = {Join::inner, Join::outer, Join::left};

// Overlapping operands: lhs rows 0..9 of the pool (shuffled), rhs rows 5..16.
struct Operands {
  SparseTensor lhs, rhs;
};
Operands make_operands(const Manager& m, Rng& rng, int c, DType dtype, int nl = 10, int nr = 12) {
  auto il = iota_ids(nl), ir = iota_ids(nr, nl / 2);
  std::shuffle(il.begin(), il.end(), rng.engine());
  std::shuffle(ir.begin(), ir.end(), rng.engine());
  return {make_tensor(m, il, rounded(random_values(rng, static_cast<std::size_t>(nl * c)), dtype), c, dtype, 2),
          make_tensor(m, ir, rounded(random_values(rng, static_cast<std::size_t>(nr * c)), dtype), c, dtype, 3)};
}

// dy on y's coordinates: random active rows, garbage-free zero capacity rows.
SparseTensor random_grad(const SparseTensor& y, Rng& rng, std::vector<double>* values = nullptr) {
  const std::int64_t n = y.rows() * y.channels();
  auto v = rounded(random_values(rng, static_cast<std::size_t>(n)), y.dtype());
  if (values != nullptr) *values = v;
  v.resize(static_cast<std::size_t>(y.capacity() * y.channels()), 0.0);
  return y.replace_feats(make_array(v, y.feats().shape(), y.dtype()));
}

TEST(SparseBinaryBackward, EveryOpAndJoinMatchesFiniteDifferences) {
  int seed = 300;
  for (BinaryOp op : k_ops) {
    for (Join join : k_joins) {
      for (auto fills : {std::pair{0.0, 0.0}, std::pair{0.5, -0.25}}) {
        SCOPED_TRACE(std::string(ops::binary_op_name(op)) + " " + std::string(ops::join_name(join)) + " fill " +
                     std::to_string(fills.first));
        Rng rng(static_cast<std::uint64_t>(++seed));
        const auto m = CoordinateManager::create();
        const int c = 3;
        const Operands o = make_operands(m, rng, c, DType::f64);
        const SparseTensor& lhs = o.lhs;
        const SparseTensor& rhs = o.rhs;
        const ops::BinaryParams params{join, fills.first, fills.second};
        const auto y = ops::sparse_binary(op, lhs, rhs, params);
        std::vector<double> dyv;
        const auto dy = random_grad(y, rng, &dyv);
        const auto g = ops::sparse_binary_backward(op, lhs, rhs, dy, params);
        EXPECT_EQ(g.lhs.key(), lhs.key());
        EXPECT_EQ(g.rhs.key(), rhs.key());
        expect_zero_tail(g.lhs);
        expect_zero_tail(g.rhs);
        const auto fl = fd_grad(
            lhs, [&](const SparseTensor& t) { return ops::sparse_binary(op, t, rhs, params); }, dyv);
        const auto fr = fd_grad(
            rhs, [&](const SparseTensor& t) { return ops::sparse_binary(op, lhs, t, params); }, dyv);
        expect_close(active(g.lhs), fl, 1e-6);
        expect_close(active(g.rhs), fr, 1e-6);
        if (op == BinaryOp::add || op == BinaryOp::sub) {
          // Linear in (lhs, rhs) when the fills are 0.
          if (fills.first == 0 && fills.second == 0) {
            const double l = dot(dyv, active(y));
            const double r = dot(active(g.lhs), active(lhs)) + dot(active(g.rhs), active(rhs));
            EXPECT_NEAR(l, r, 1e-10 * std::max(1.0, std::abs(l)));
          }
        }
      }
    }
  }
}

TEST(SparseBinaryBackward, SameKeyFastPathAndTies) {
  Rng rng(17);
  const auto m = CoordinateManager::create();
  const int rows = 8, c = 2;
  const auto lhs = make_tensor(m, iota_ids(rows), random_values(rng, rows * c), c, DType::f64);
  auto rv = active(lhs);
  for (std::size_t i = 1; i < rv.size(); ++i) rv[i] += rng.uniform(0.1, 0.5) * (i % 2 == 0 ? 1 : -1);  // tie at 0 only
  rv.resize(static_cast<std::size_t>(lhs.capacity() * c), 0.0);
  const auto rhs = lhs.replace_feats(make_array(rv, lhs.feats().shape(), DType::f64));
  for (BinaryOp op : k_ops) {
    std::vector<double> dyv;
    const auto dy = random_grad(lhs, rng, &dyv);
    const auto g = ops::sparse_binary_backward(op, lhs, rhs, dy, {Join::inner, 9.0, 9.0});
    expect_zero_tail(g.lhs);
    if (op == BinaryOp::maximum || op == BinaryOp::minimum) {
      EXPECT_EQ(active(g.lhs)[0], dyv[0]);  // ties go to lhs
      EXPECT_EQ(active(g.rhs)[0], 0.0);
    }
    const auto fl = fd_grad(
        lhs, [&](const SparseTensor& t) { return ops::sparse_binary(op, t, rhs); }, dyv);
    auto fl_ok = fl;
    if (op == BinaryOp::maximum || op == BinaryOp::minimum) fl_ok[0] = active(g.lhs)[0];  // kink at the tie
    expect_close(active(g.lhs), fl_ok, 1e-6);
  }
}

TEST(SparseBinaryBackward, NanSelectsTheNanSide) {
  const auto m = CoordinateManager::create();
  const auto lhs = make_tensor(m, iota_ids(2), {NAN, 1.0}, 1, DType::f32, 0);
  const auto rhs = lhs.replace_feats(make_array({2.0, NAN}, Shape{2, 1}, DType::f32));
  const auto dy = lhs.replace_feats(make_array({3.0, 4.0}, Shape{2, 1}, DType::f32));
  for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum}) {
    const auto g = ops::sparse_binary_backward(op, lhs, rhs, dy);
    EXPECT_EQ(active(g.lhs), (std::vector<double>{3.0, 0.0}));
    EXPECT_EQ(active(g.rhs), (std::vector<double>{0.0, 4.0}));
  }
}

TEST(FeaturesGrad, InputsAreNotModified) {
  Rng rng(53);
  const auto m = CoordinateManager::create();
  const int rows = 6, c = 3;
  const auto x = make_tensor(m, iota_ids(rows), random_values(rng, rows * c), c, DType::f32);
  const auto other = make_tensor(m, iota_ids(rows, 3), random_values(rng, rows * c), c, DType::f32);
  const auto dy = random_grad(x, rng);
  const auto before_x = to_doubles(x.feats()), before_dy = to_doubles(dy.feats());
  const Array w = make_array(random_values(rng, c), Shape{c}, DType::f32);
  const auto w_before = to_doubles(w);
  ops::activation_backward(x, dy, {ActivationKind::silu});
  ops::dropout_backward(dy, {0.5, 1});
  ops::layer_norm_backward(x, dy, {w, w});
  ops::rms_norm_backward(x, dy, {w});
  ops::batch_norm_backward(x, dy, {w, w, w, Array::full(Shape{c}, DType::f32, 1.0, Device::cpu()), true});
  ops::cat_backward(x, x, x.replace_feats(Array::zeros(Shape{x.capacity(), 2 * c}, DType::f32, Device::cpu())));
  for (BinaryOp op : k_ops) {
    const auto y = ops::sparse_binary(op, x, other);
    const auto g = random_grad(y, rng);
    const auto g_before = to_doubles(g.feats());
    ops::sparse_binary_backward(op, x, other, g);
    EXPECT_EQ(to_doubles(g.feats()), g_before);
  }
  ops::row_subset_backward(x, dy);
  EXPECT_EQ(to_doubles(x.feats()), before_x);
  EXPECT_EQ(to_doubles(dy.feats()), before_dy);
  EXPECT_EQ(to_doubles(w), w_before);
}

TEST(SparseBinaryBackward, LowPrecisionMatchesFloat64) {
  Rng rng(23);
  for (DType dtype : k_low) {
    for (BinaryOp op : k_ops) {
      for (Join join : k_joins) {
        const auto m = CoordinateManager::create();
        const Operands o = make_operands(m, rng, 4, dtype);
        const SparseTensor& lhs = o.lhs;
        const SparseTensor& rhs = o.rhs;
        const ops::BinaryParams params{join, 0.5, -0.5};
        const auto y = ops::sparse_binary(op, lhs, rhs, params);
        const auto dy = random_grad(y, rng);
        const auto got = ops::sparse_binary_backward(op, lhs, rhs, dy, params);
        const auto want = ops::sparse_binary_backward(op, astype(lhs, DType::f64), astype(rhs, DType::f64),
                                                      astype(dy, DType::f64), params);
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::string(ops::binary_op_name(op)));
        expect_dtype_close(active(got.lhs), active(want.lhs), dtype);
        expect_dtype_close(active(got.rhs), active(want.rhs), dtype);
      }
    }
  }
}

TEST(SparseBinaryBackward, EmptyOperands) {
  Rng rng(29);
  const auto m = CoordinateManager::create();
  const auto lhs = make_tensor(m, {}, {}, 2, DType::f32, 1);
  const auto rhs = make_tensor(m, iota_ids(3), random_values(rng, 6), 2, DType::f32, 0);
  for (BinaryOp op : k_ops) {
    const auto y = ops::sparse_binary(op, lhs, rhs, {Join::outer});
    const auto g = ops::sparse_binary_backward(op, lhs, rhs, random_grad(y, rng), {Join::outer});
    EXPECT_EQ(g.lhs.rows(), 0);
    expect_zero_tail(g.lhs);
    EXPECT_EQ(g.rhs.rows(), 3);
  }
}

// ---- row subsets ------------------------------------------------------------------------

TEST(RowSubsetBackward, AdjointOfPruneCropAndReorder) {
  Rng rng(31);
  for (DType dtype : {DType::f64, DType::f32}) {
    const auto m = CoordinateManager::create();
    const int rows = 15, c = 3;
    const auto x = make_tensor(m, iota_ids(rows), random_values(rng, rows * c), c, dtype);
    const std::vector<SparseTensor> subsets = {
        ops::prune(x, Array::from_vector(std::vector<std::int32_t>{7, 2, 11, 0}, Shape{4}, Device::cpu())),
        ops::prune(x, Array::from_vector(std::vector<std::int32_t>{3}, Shape{1}, Device::cpu())),
        ops::prune(x, Array::from_vector(std::vector<std::int32_t>{}, Shape{0}, Device::cpu())),
        ops::crop(x, Int3{-40, -20, 970}, Int3{-30, 0, 1000}), x};
    for (const auto& y : subsets) {
      std::vector<double> dyv;
      const auto dy = random_grad(y, rng, &dyv);
      const auto dx = ops::row_subset_backward(x, dy);
      EXPECT_EQ(dx.key(), x.key());
      expect_zero_tail(dx);
      const double l = dot(dyv, active(y)), r = dot(active(dx), active(x));
      EXPECT_NEAR(l, r, (dtype == DType::f64 ? 1e-10 : 1e-5) * std::max(1.0, std::abs(l)));
    }
    // Same key: a copy of dy, never dy's storage.
    const auto dy = random_grad(x, rng);
    const auto same = ops::row_subset_backward(x, dy);
    EXPECT_NE(same.feats().raw(), dy.feats().raw());
    EXPECT_EQ(active(same), active(dy));
  }
}

// ---- error paths --------------------------------------------------------------------------

TEST(FeaturesGradErrors, ActivationAndDropout) {
  Rng rng(41);
  const auto m = CoordinateManager::create();
  const auto x = make_tensor(m, iota_ids(4), random_values(rng, 8), 2, DType::f32);
  const auto other = make_tensor(m, iota_ids(4, 20), random_values(rng, 8), 2, DType::f32);
  expect_error<ValueError>(m, [&] { ops::activation_backward(x, other, {}); },
                           {"[activation_backward]", "argument 'dy'", "coordinate key"});
  expect_error<TypeError>(m, [&] { ops::activation_backward(x, astype(x, DType::f64), {}); },
                          {"[activation_backward]", "argument 'dy'", "dtype"});
  const auto three = x.replace_feats(Array::zeros(Shape{x.capacity(), 3}, DType::f32, Device::cpu()));
  expect_error<ValueError>(m, [&] { ops::activation_backward(x, three, {}); }, {"argument 'dy'", "3 channels"});
  expect_error<ValueError>(m, [&] { ops::activation_backward(x, x, {static_cast<ActivationKind>(42)}); },
                           {"argument 'kind'", "42"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::activation_backward(x, x, {ActivationKind::leaky_relu, NAN});
                           },
                           {"argument 'negative_slope'"});
  expect_error<ValueError>(m, [&] { ops::activation_backward(SparseTensor{}, x, {}); }, {"argument 'x'"});
  expect_error<ValueError>(m, [&] { ops::dropout_backward(x, {1.0}); }, {"[dropout_backward]", "argument 'p'"});
  expect_error<ValueError>(m, [&] { ops::dropout_backward(x, {-0.1}); }, {"argument 'p'"});
  expect_error<ValueError>(m, [&] { ops::dropout_backward(SparseTensor{}, {}); }, {"argument 'dy'"});
}

TEST(FeaturesGradErrors, Norms) {
  Rng rng(43);
  const auto m = CoordinateManager::create();
  const auto x = make_tensor(m, iota_ids(4), random_values(rng, 12), 3, DType::f32);
  const Array w2 = Array::zeros(Shape{2}, DType::f32, Device::cpu());
  const Array w3_64 = Array::zeros(Shape{3}, DType::f64, Device::cpu());
  expect_error<ValueError>(m, [&] { ops::layer_norm_backward(x, x, {w2}); },
                           {"[layer_norm_backward]", "argument 'weight'", "(3,)"});
  expect_error<TypeError>(m,
                          [&] {
                            ops::layer_norm_backward(x, x, {std::nullopt, w3_64});
                          },
                          {"argument 'bias'", "dtype"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::layer_norm_backward(x, x, {std::nullopt, std::nullopt, 0.0});
                           },
                           {"argument 'eps'"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::rms_norm_backward(x, x, {std::nullopt, -1.0});
                           },
                           {"[rms_norm_backward]", "argument 'eps'"});
  const auto none = x.replace_feats(Array::zeros(Shape{x.capacity(), 0}, DType::f32, Device::cpu()));
  expect_error<ValueError>(m, [&] { ops::rms_norm_backward(none, none); }, {"argument 'x'", "channel"});
  const auto other = make_tensor(m, iota_ids(4, 30), random_values(rng, 12), 3, DType::f32);
  expect_error<ValueError>(m, [&] { ops::rms_norm_backward(x, other); }, {"argument 'dy'"});
  ops::BatchNormArgs args;
  args.running_mean = Array::zeros(Shape{3}, DType::f32, Device::cpu());
  args.running_var = Array::full(Shape{3}, DType::f32, 1.0, Device::cpu());
  args.training = true;
  const auto one = make_tensor(m, iota_ids(1), random_values(rng, 3), 3, DType::f32);
  expect_error<ValueError>(m, [&] { ops::batch_norm_backward(one, one, args); },
                           {"[batch_norm_backward]", "argument 'x'", "more than one"});
  auto bad = args;
  bad.weight = w2;
  expect_error<ValueError>(m, [&] { ops::batch_norm_backward(x, x, bad); }, {"argument 'weight'"});
  bad = args;
  bad.running_var = Array{};
  expect_error<ValueError>(m, [&] { ops::batch_norm_backward(x, x, bad); }, {"argument 'running_var'"});
  bad = args;
  bad.eps = 0;
  expect_error<ValueError>(m, [&] { ops::batch_norm_backward(x, x, bad); }, {"argument 'eps'"});
}

TEST(FeaturesGradErrors, CatBinaryAndRowSubsets) {
  Rng rng(47);
  const auto m = CoordinateManager::create();
  const auto a = make_tensor(m, iota_ids(4), random_values(rng, 8), 2, DType::f32);
  const auto other = make_tensor(m, iota_ids(4, 30), random_values(rng, 8), 2, DType::f32);
  expect_error<ValueError>(m, [&] { ops::cat_backward(a, other, a); }, {"[cat_backward]", "argument 'b'"});
  expect_error<ValueError>(m, [&] { ops::cat_backward(a, a, a); }, {"argument 'dy'", "2 channels, expected 4"});

  const char* name = "[sparse_binary_backward]";
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(static_cast<BinaryOp>(9), a, a, a); },
                           {name, "argument 'op'"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::add, a, a, a, {static_cast<Join>(7)}); },
                           {"argument 'join'"});
  const auto m2 = CoordinateManager::create();
  const auto foreign = make_tensor(m2, iota_ids(4), random_values(rng, 8), 2, DType::f32);
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::add, a, foreign, a); },
                           {"argument 'rhs'", "manager"});
  const auto strided = make_tensor(m, iota_ids(4), random_values(rng, 8), 2, DType::f32, 0, Int3{2});
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::add, a, strided, a); },
                           {"argument 'rhs'", "stride"});
  expect_error<TypeError>(m, [&] { ops::sparse_binary_backward(BinaryOp::mul, a, astype(other, DType::f64), a); },
                          {"argument 'rhs'", "dtype"});
  const auto wide = make_tensor(m, iota_ids(4, 30), random_values(rng, 12), 3, DType::f32);
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::mul, a, wide, a); },
                           {"argument 'rhs'", "channels"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::mul, a, other, foreign); },
                           {"argument 'dy'", "manager"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::mul, a, other, other, {Join::left}); },
                           {"argument 'dy'", "coordinate key"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary_backward(BinaryOp::add, a, other, wide); },
                           {"argument 'dy'", "channels"});

  const char* rs = "[row_subset_backward]";
  expect_error<ValueError>(m, [&] { ops::row_subset_backward(a, foreign); }, {rs, "argument 'dy'", "manager"});
  expect_error<ValueError>(m, [&] { ops::row_subset_backward(a, strided); }, {"argument 'dy'", "stride"});
  expect_error<TypeError>(m, [&] { ops::row_subset_backward(a, astype(a, DType::f64)); }, {"argument 'dy'", "dtype"});
  const auto a3 = a.replace_feats(Array::zeros(Shape{a.capacity(), 3}, DType::f32, Device::cpu()));
  expect_error<ValueError>(m, [&] { ops::row_subset_backward(a, a3); }, {"argument 'dy'", "channels"});
  expect_error<ValueError>(m, [&] { ops::row_subset_backward(a, other); }, {rs, "argument 'dy'", "subset"});
}

}  // namespace
}  // namespace lattice::testing
