// Optimizers (SGD, AdamW), cross-entropy and segmentation metrics on the CPU.
// References are PyTorch's documented update rules and the textbook loss,
// written here with plain float64 loops.
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/io/safetensors.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

// Lookup in an ordered name -> Array list (nn::StateDict / io::TensorDict).
inline const Array* find_entry(const std::vector<std::pair<std::string, Array>>& d, const std::string& name) {
  for (const auto& e : d) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}
inline const Array& entry(const std::vector<std::pair<std::string, Array>>& d, const std::string& name) {
  const Array* a = find_entry(d, name);
  if (a == nullptr) throw std::out_of_range("no entry " + name);
  return *a;
}

// Optimizer and module state dictionaries save straight to safetensors.
static_assert(std::is_same_v<nn::StateDict, io::TensorDict>);

using nn::AdamW;
using nn::AdamWOptions;
using nn::CrossEntropyParams;
using nn::Reduction;
using nn::SGD;
using nn::SGDOptions;

// ---- optimizer references ---------------------------------------------------------------

struct SgdRef {
  SGDOptions o;
  std::vector<double> buf;
  bool started = false;
  void step(std::vector<double>& p, const std::vector<double>& grad) {
    if (!started) buf.assign(p.size(), 0.0);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i] + o.weight_decay * p[i];
      if (o.momentum != 0.0) {
        buf[i] = started ? o.momentum * buf[i] + (1.0 - o.dampening) * g : g;
        g = o.nesterov ? g + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * g;
    }
    started = true;
  }
};

struct AdamRef {
  AdamWOptions o;
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& p, const std::vector<double>& g) {
    if (t == 0) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1.0 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1.0 - o.beta2) * g[i] * g[i];
      const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
      p[i] -= (o.lr / bc1) * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
    }
  }
};

// Runs `steps` steps of optimizer Opt (with its reference Ref) on a (3, 5)
// parameter of `dtype` and compares every step with the float64 reference on
// the same (rounded) values.
template <class Opt, class Ref, class Options>
void check_against_reference(const Options& options, DType dtype, double tol, int steps, std::uint64_t seed) {
  Rng rng(seed);
  const Shape shape{3, 5};
  Array value = make_array(random_values(rng, 15), shape, dtype);
  std::vector<double> ref_p = to_doubles(value);
  nn::Parameter p = nn::make_parameter(value);
  Opt opt({p}, options);
  Ref ref{options};
  for (int s = 0; s < steps; ++s) {
    Array grad = make_array(random_values(rng, 15), shape, dtype);
    p->grad = grad;
    opt.step();
    ref.step(ref_p, to_doubles(grad));
    const std::vector<double> got = to_doubles(p->value);
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], ref_p[i], tol * (1.0 + std::abs(ref_p[i]))) << "step " << s << " element " << i;
    }
    if (dtype != DType::f64) ref_p = got;  // 16-bit: compare one step at a time from the stored value
  }
  EXPECT_TRUE(p->value.shares_buffer_with(value)) << "step() must update the parameter in place";
}

TEST(Optim, SgdMatchesReference) {
  const std::vector<SGDOptions> configs = {{0.1, 0.0, 0.0, 0.0, false},
                                           {0.05, 0.9, 0.1, 0.01, false},
                                           {0.02, 0.8, 0.0, 0.05, true},
                                           {0.3, 0.5, 0.5, 0.0, false}};
  for (std::size_t k = 0; k < configs.size(); ++k) {
    SCOPED_TRACE(k);
    check_against_reference<SGD, SgdRef>(configs[k], DType::f64, 1e-14, 6, 10 + k);
    check_against_reference<SGD, SgdRef>(configs[k], DType::f32, 1e-6, 6, 10 + k);
    check_against_reference<SGD, SgdRef>(configs[k], DType::f16, 2e-3, 1, 10 + k);
    check_against_reference<SGD, SgdRef>(configs[k], DType::bf16, 1e-2, 1, 10 + k);
  }
}

TEST(Optim, AdamWMatchesReference) {
  const std::vector<AdamWOptions> configs = {
      {}, {0.01, 0.8, 0.99, 1e-6, 0.1}, {0.1, 0.0, 0.5, 1e-3, 0.0}, {0.003, 0.95, 0.9999, 1e-8, 0.5}};
  for (std::size_t k = 0; k < configs.size(); ++k) {
    SCOPED_TRACE(k);
    check_against_reference<AdamW, AdamRef>(configs[k], DType::f64, 1e-13, 8, 20 + k);
    check_against_reference<AdamW, AdamRef>(configs[k], DType::f32, 2e-6, 8, 20 + k);
    check_against_reference<AdamW, AdamRef>(configs[k], DType::f16, 2e-3, 1, 20 + k);
    check_against_reference<AdamW, AdamRef>(configs[k], DType::bf16, 1e-2, 1, 20 + k);
  }
}

TEST(Optim, SkipsParametersWithoutGradAndZeroGradDrops) {
  nn::Parameter a = nn::make_parameter(Array::from_vector<float>({1, 2}, Shape{2}));
  nn::Parameter b = nn::make_parameter(Array::from_vector<float>({3, 4}, Shape{2}));
  nn::Parameter c = nn::make_parameter(Array::from_vector<float>({5, 6}, Shape{2}), /*requires_grad=*/false);
  c->grad = Array::from_vector<float>({1, 1}, Shape{2});
  a->grad = Array::from_vector<float>({1, -1}, Shape{2});
  AdamW opt({a, b, c}, AdamWOptions{0.1, 0.9, 0.999, 1e-8, 0.0});
  opt.step();
  EXPECT_EQ(b->value.to_vector<float>(), (std::vector<float>{3, 4}));
  EXPECT_EQ(c->value.to_vector<float>(), (std::vector<float>{5, 6}));
  const std::vector<float> av = a->value.to_vector<float>();
  EXPECT_NEAR(av[0], 0.9f, 1e-6);  // Adam's first step moves by lr * sign(g)
  EXPECT_NEAR(av[1], 2.1f, 1e-6);
  const nn::StateDict state = opt.state_dict();
  EXPECT_EQ(state.size(), 3u);  // parameter 0 only
  EXPECT_EQ(find_entry(state, "state.0.step") != nullptr, true);
  opt.zero_grad();
  EXPECT_FALSE(a->grad.has_value());
  EXPECT_FALSE(c->grad.has_value());
  opt.step();  // nothing to do
  EXPECT_NEAR(a->value.to_vector<float>()[0], 0.9f, 1e-6);
}

TEST(Optim, EmptyParameterAndEmptyList) {
  nn::Parameter e = nn::make_parameter(Array::zeros(Shape{0, 3}, DType::f32));
  e->grad = Array::zeros(Shape{0, 3}, DType::f32);
  SGD sgd({e}, SGDOptions{0.1, 0.9});
  sgd.step();
  AdamW adam({e});
  adam.step();
  EXPECT_EQ(entry(adam.state_dict(), "state.0.step").item_int(), 1);
  SGD none({});
  none.step();
  EXPECT_TRUE(none.state_dict().empty());
}

// Saving the state (through a safetensors round trip) and loading it into a
// fresh optimizer continues exactly as the original would.
template <class Opt, class Options>
void check_resume(const Options& options) {
  Rng rng(7);
  auto make = [&](std::uint64_t seed) {
    Rng r(seed);
    return std::vector<nn::Parameter>{nn::make_parameter(make_array(random_values(r, 6), Shape{2, 3}, DType::f32)),
                                      nn::make_parameter(make_array(random_values(r, 4), Shape{4}, DType::f64))};
  };
  std::vector<nn::Parameter> a = make(1);
  Opt first(a, options);
  std::vector<std::vector<double>> grads;
  for (int s = 0; s < 5; ++s) grads.push_back(random_values(rng, 10));
  auto set_grads = [&](std::vector<nn::Parameter>& ps, int s) {
    const std::vector<double>& g = grads[static_cast<std::size_t>(s)];
    ps[0]->grad = make_array({g.begin(), g.begin() + 6}, Shape{2, 3}, DType::f32);
    ps[1]->grad = make_array({g.begin() + 6, g.end()}, Shape{4}, DType::f64);
  };
  for (int s = 0; s < 2; ++s) set_grads(a, s), first.step();
  const std::string bytes = io::serialize_safetensors(first.state_dict());
  std::vector<nn::Parameter> b = {nn::make_parameter(a[0]->value.clone()), nn::make_parameter(a[1]->value.clone())};
  Opt second(b, options);
  second.load_state_dict(io::deserialize_safetensors(bytes));
  for (int s = 2; s < 5; ++s) {
    set_grads(a, s), first.step();
    set_grads(b, s), second.step();
  }
  EXPECT_EQ(a[0]->value.to_vector<float>(), b[0]->value.to_vector<float>());
  EXPECT_EQ(a[1]->value.to_vector<double>(), b[1]->value.to_vector<double>());
}

TEST(Optim, StateDictRoundTripResumesExactly) {
  check_resume<SGD>(SGDOptions{0.1, 0.9, 0.0, 0.01, true});
  check_resume<AdamW>(AdamWOptions{0.01, 0.9, 0.99, 1e-8, 0.05});
}

TEST(Optim, StateDictNamesAndDtypes) {
  nn::Parameter h = nn::make_parameter(make_array({0.5, -0.25}, Shape{2}, DType::f16));
  h->grad = make_array({1.0, 1.0}, Shape{2}, DType::f16);
  SGD sgd({h}, SGDOptions{0.1, 0.9});
  sgd.step();
  const nn::StateDict s = sgd.state_dict();
  ASSERT_EQ(find_entry(s, "state.0.momentum_buffer") != nullptr, true);
  EXPECT_EQ(entry(s, "state.0.momentum_buffer").dtype(), DType::f32);  // float32 state for 16-bit parameters
}

TEST(Optim, Errors) {
  nn::Parameter p = nn::make_parameter(Array::zeros(Shape{2}, DType::f32));
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{-1.0}); }, {"[SGD]", "'lr'", "-1"});
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{0.1, -0.5}); }, {"[SGD]", "'momentum'"});
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{0.1, 0.0, 0.0, 0.0, true}); }, {"'nesterov'"});
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{0.1, 0.9, 0.1, 0.0, true}); }, {"'nesterov'", "dampening"});
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{0.1, 0.0, 0.0, -1.0}); }, {"'weight_decay'"});
  expect_error<ValueError>([&] { SGD({p}, SGDOptions{std::nan("")}); }, {"'lr'"});
  expect_error<ValueError>([&] { AdamW({p}, AdamWOptions{0.1, 1.0}); }, {"[AdamW]", "'beta1'"});
  expect_error<ValueError>([&] { AdamW({p}, AdamWOptions{0.1, 0.9, -0.1}); }, {"'beta2'"});
  expect_error<ValueError>([&] { AdamW({p}, AdamWOptions{0.1, 0.9, 0.9, -1.0}); }, {"'eps'"});
  expect_error<ValueError>([&] { AdamW({p}, AdamWOptions{0.1, 0.9, 0.9, 1e-8, -2.0}); }, {"'weight_decay'"});
  expect_error<ValueError>([&] { SGD({p, nullptr}); }, {"'params[1]'", "null"});
  expect_error<ValueError>([&] { SGD({p, p}); }, {"'params[1]'", "more than once"});
  nn::Parameter ip = nn::make_parameter(Array::zeros(Shape{2}, DType::i32));
  expect_error<TypeError>([&] { AdamW({ip}); }, {"'params[0]'", "int32"});
  SGD sgd({p}, SGDOptions{0.1});
  expect_error<ValueError>([&] { sgd.set_lr(-0.1); }, {"'lr'"});

  // A bad grad on the second parameter leaves the first untouched.
  nn::Parameter q = nn::make_parameter(Array::zeros(Shape{3}, DType::f32));
  p->grad = Array::full(Shape{2}, DType::f32, 1.0);
  q->grad = Array::zeros(Shape{4}, DType::f32);
  AdamW adam({p, q});
  expect_error<ValueError>([&] { adam.step(); }, {"[AdamW]", "'params[1].grad'", "(4,)"});
  EXPECT_EQ(p->value.to_vector<float>(), (std::vector<float>{0, 0}));
  EXPECT_TRUE(adam.state_dict().empty());
  q->grad = Array::zeros(Shape{3}, DType::f64);
  expect_error<TypeError>([&] { adam.step(); }, {"'params[1].grad'", "float64"});

  // load_state_dict validates everything before changing anything.
  q->grad.reset();
  adam.step();
  const nn::StateDict good = adam.state_dict();
  auto with = [&](const std::string& name, Array a) {
    nn::StateDict s = good;
    for (auto& e : s) {
      if (e.first == name) {
        e.second = std::move(a);
        return s;
      }
    }
    s.emplace_back(name, std::move(a));
    return s;
  };
  expect_error<ValueError>([&] { adam.load_state_dict(with("state.0.bogus", Array::zeros(Shape{2}, DType::f32))); },
                           {"unknown entry 'state.0.bogus'"});
  expect_error<ValueError>([&] { adam.load_state_dict(with("state.5.exp_avg", Array::zeros(Shape{2}, DType::f32))); },
                           {"names parameter 5"});
  expect_error<ValueError>([&] { adam.load_state_dict(with("state.0.exp_avg", Array::zeros(Shape{3}, DType::f32))); },
                           {"'state.0.exp_avg'", "shape"});
  expect_error<TypeError>([&] { adam.load_state_dict(with("state.0.exp_avg", Array::zeros(Shape{2}, DType::f64))); },
                          {"'state.0.exp_avg'", "float64"});
  expect_error<ValueError>([&] { adam.load_state_dict(with("state.0.step", Array::scalar<std::int64_t>(-3))); },
                           {"'state.0.step'", "-3"});
  expect_error<ValueError>([&] { adam.load_state_dict(with("state.1.exp_avg", Array::zeros(Shape{3}, DType::f32))); },
                           {"parameter 1"});
  EXPECT_EQ(entry(adam.state_dict(), "state.0.step").item_int(), 1);
  expect_error<ValueError>([&] { sgd.load_state_dict(good); }, {"[SGD]", "unknown entry"});
}

// ---- cross-entropy --------------------------------------------------------------------

// float64 reference: the loss and d loss / d logits.
struct CeRef {
  double loss = 0;
  std::vector<double> grad;
};

CeRef ce_reference(const std::vector<double>& x, const std::vector<std::int32_t>& y, std::int64_t c,
                   const CrossEntropyParams& p, double g = 1.0) {
  const std::size_t n = y.size();
  CeRef r;
  r.grad.assign(n * static_cast<std::size_t>(c), 0.0);
  std::int64_t valid = 0;
  for (std::size_t i = 0; i < n; ++i) valid += y[i] != p.ignore_index ? 1 : 0;
  const double denom = p.reduction == Reduction::mean ? static_cast<double>(valid) : 1.0;
  if (valid == 0) return r;
  const double s = p.label_smoothing;
  for (std::size_t i = 0; i < n; ++i) {
    if (y[i] == p.ignore_index) continue;
    const double* xi = &x[i * static_cast<std::size_t>(c)];
    double mx = xi[0];
    for (std::int64_t j = 1; j < c; ++j) mx = std::max(mx, xi[j]);
    double se = 0;
    for (std::int64_t j = 0; j < c; ++j) se += std::exp(xi[j] - mx);
    const double lse = mx + std::log(se);
    for (std::int64_t j = 0; j < c; ++j) {
      const double t = (j == y[i] ? 1.0 - s : 0.0) + s / static_cast<double>(c);
      r.loss += t * (lse - xi[j]) / denom;
      r.grad[i * static_cast<std::size_t>(c) + static_cast<std::size_t>(j)] = g * (std::exp(xi[j] - lse) - t) / denom;
    }
  }
  return r;
}

std::vector<std::int32_t> random_labels(Rng& rng, std::size_t n, std::int64_t c, bool ignore_some) {
  std::vector<std::int32_t> y(n);
  for (auto& v : y) v = static_cast<std::int32_t>(rng.integer(0, c - 1));
  if (ignore_some) {
    for (std::size_t i = 0; i < n; i += 3) y[i] = -100;
  }
  return y;
}

std::vector<CrossEntropyParams> ce_configs() {
  return {{-100, Reduction::mean, 0.0},
          {-100, Reduction::sum, 0.0},
          {-100, Reduction::mean, 0.1},
          {-100, Reduction::sum, 0.25}};
}

TEST(CrossEntropy, MatchesFloat64ReferenceAllDtypes) {
  Rng rng(3);
  const std::int64_t n = 11, c = 5;
  std::vector<double> x = random_values(rng, static_cast<std::size_t>(n * c));
  for (double& v : x) v *= 4.0;
  const std::vector<std::int32_t> y = random_labels(rng, static_cast<std::size_t>(n), c, true);
  const Array labels = Array::from_vector(y, Shape{n});
  for (const CrossEntropyParams& p : ce_configs()) {
    for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)));
      const Array logits = make_array(x, Shape{n, c}, dt);
      const CeRef ref = ce_reference(to_doubles(logits), y, c, p, 1.0);
      const Array loss = nn::cross_entropy(logits, labels, p);
      EXPECT_EQ(loss.dtype(), dt == DType::f64 ? DType::f64 : DType::f32);
      EXPECT_EQ(loss.ndim(), 0);
      const double tol = dt == DType::f64 ? 1e-12 : 1e-5;  // 16-bit inputs compute in float32
      EXPECT_NEAR(loss.item_double(), ref.loss, tol * (1.0 + std::abs(ref.loss)));
      const Array grad = nn::cross_entropy_backward(logits, labels, p);
      EXPECT_EQ(grad.dtype(), dt);
      const std::vector<double> gd = to_doubles(grad);
      const double gtol = dt == DType::f64 ? 1e-12 : tolerance_for(dt) * 2;
      for (std::size_t i = 0; i < gd.size(); ++i) EXPECT_NEAR(gd[i], ref.grad[i], gtol) << i;
    }
  }
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  Rng rng(5);
  const std::int64_t n = 6, c = 4;
  const std::vector<double> x = random_values(rng, static_cast<std::size_t>(n * c));
  const std::vector<std::int32_t> y = random_labels(rng, static_cast<std::size_t>(n), c, true);
  const Array labels = Array::from_vector(y, Shape{n});
  const double g = 2.5;
  for (const CrossEntropyParams& p : ce_configs()) {
    const Array grad = nn::cross_entropy_backward(Array::from_vector(x, Shape{n, c}), labels, p, Array::scalar(g));
    const std::vector<double> gd = grad.to_vector<double>();
    const double h = 1e-5;
    for (std::size_t k = 0; k < x.size(); ++k) {
      std::vector<double> xp = x, xm = x;
      xp[k] += h;
      xm[k] -= h;
      const double lp = nn::cross_entropy(Array::from_vector(xp, Shape{n, c}), labels, p).item_double();
      const double lm = nn::cross_entropy(Array::from_vector(xm, Shape{n, c}), labels, p).item_double();
      const double fd = g * (lp - lm) / (2 * h);
      EXPECT_NEAR(gd[k], fd, 1e-6 * (1.0 + std::abs(fd))) << "element " << k;
    }
  }
}

TEST(CrossEntropy, IgnoredEmptyAndStable) {
  const Array logits = Array::from_vector<float>({1, 2, 3, 4}, Shape{2, 2});
  const Array none = Array::from_vector<std::int32_t>({-100, -100}, Shape{2});
  EXPECT_EQ(nn::cross_entropy(logits, none).item_double(), 0.0);  // mean over no rows is 0 (documented)
  EXPECT_EQ(to_doubles(nn::cross_entropy_backward(logits, none)), (std::vector<double>{0, 0, 0, 0}));
  const Array e = Array::zeros(Shape{0, 3}, DType::f32);
  const Array ey = Array::zeros(Shape{0}, DType::i32);
  EXPECT_EQ(nn::cross_entropy(e, ey).item_double(), 0.0);
  EXPECT_EQ(nn::cross_entropy(e, ey, {-100, Reduction::sum}).item_double(), 0.0);
  EXPECT_EQ(nn::cross_entropy_backward(e, ey).shape(), (Shape{0, 3}));
  // A custom ignore_index, and huge logits (stable log-sum-exp).
  const Array big = Array::from_vector<float>({1e4f, 0.0f, -1e4f, 1e4f}, Shape{2, 2});
  const Array yl = Array::from_vector<std::int32_t>({1, 7}, Shape{2});
  const double l = nn::cross_entropy(big, yl, {7, Reduction::sum}).item_double();
  EXPECT_NEAR(l, 1e4, 1e-2);
  const std::vector<double> gb = to_doubles(nn::cross_entropy_backward(big, yl, {7, Reduction::sum}));
  EXPECT_NEAR(gb[0], 1.0, 1e-6);
  EXPECT_NEAR(gb[1], -1.0, 1e-6);
  EXPECT_EQ(gb[2], 0.0);
  EXPECT_EQ(gb[3], 0.0);
  // One row, one class: loss 0.
  EXPECT_NEAR(
      nn::cross_entropy(Array::from_vector<double>({3.0}, Shape{1, 1}), Array::from_vector<std::int32_t>({0}, Shape{1}))
          .item_double(),
      0.0, 1e-15);
}

TEST(CrossEntropy, SparseTensorMatchesDense) {
  Rng rng(9);
  const std::vector<Coord> coords = random_coords(rng, 3, -4, 4, I3{1, 1, 1}, 0.05);
  const auto n = static_cast<std::int64_t>(coords.size());
  ASSERT_GT(n, 3);
  const std::int64_t c = 3;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c)), Shape{n, c}, DType::f64);
  const SparseTensor x = SparseTensor::from_coords(coords_array(coords), feats);
  const Array labels = Array::from_vector(random_labels(rng, static_cast<std::size_t>(n), c, true), Shape{n});
  const std::vector<unsigned char> before = bytes_of(feats);
  for (const CrossEntropyParams& p : ce_configs()) {
    EXPECT_NEAR(nn::cross_entropy(x, labels, p).item_double(), nn::cross_entropy(feats, labels, p).item_double(),
                1e-15);
    const SparseTensor g = nn::cross_entropy_backward(x, labels, p);
    EXPECT_EQ(g.key(), x.key());
    EXPECT_EQ(g.feats().to_vector<double>(), nn::cross_entropy_backward(feats, labels, p).to_vector<double>());
  }
  EXPECT_EQ(bytes_of(feats), before);
}

TEST(CrossEntropy, Errors) {
  const Array logits = Array::zeros(Shape{3, 4}, DType::f32);
  const Array labels = Array::from_vector<std::int32_t>({0, 1, 2}, Shape{3});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy(logits, Array::from_vector<std::int32_t>({0, 4, 1}, Shape{3}));
      },
      {"[cross_entropy]", "'labels'", "entry 1 is 4", "[0, 4)"});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy(logits, Array::from_vector<std::int32_t>({0, -1, 1}, Shape{3}));
      },
      {"'labels'", "entry 1 is -1"});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy_backward(logits, Array::from_vector<std::int32_t>({9, 0, 1}, Shape{3}));
      },
      {"[cross_entropy_backward]", "'labels'", "entry 0 is 9"});
  expect_error<TypeError>([&] { nn::cross_entropy(logits, labels.astype(DType::i64)); }, {"'labels'", "int32"});
  expect_error<ValueError>([&] { nn::cross_entropy(logits, Array::zeros(Shape{2}, DType::i32)); },
                           {"'labels'", "(3,)"});
  expect_error<TypeError>(
      [&] {
        nn::cross_entropy(Array::zeros(Shape{3, 4}, DType::i32), labels);
      },
      {"'logits'", "float"});
  expect_error<ValueError>([&] { nn::cross_entropy(Array::zeros(Shape{3}, DType::f32), labels); }, {"'logits'", "2-D"});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy(Array::zeros(Shape{3, 0}, DType::f32), labels);
      },
      {"'logits'", "at least one class"});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy(logits, labels, {-100, Reduction::mean, 1.5});
      },
      {"'label_smoothing'", "1.5"});
  expect_error<ValueError>(
      [&] {
        nn::cross_entropy(logits, labels, {-100, static_cast<Reduction>(7)});
      },
      {"'reduction'"});
  expect_error<ValueError>([&] { nn::cross_entropy_backward(logits, labels, {}, Array::zeros(Shape{2}, DType::f32)); },
                           {"'grad_loss'", "one element"});
  expect_error<TypeError>([&] { nn::cross_entropy_backward(logits, labels, {}, Array::scalar<std::int32_t>(1)); },
                          {"'grad_loss'"});
}

// ---- metrics ----------------------------------------------------------------------------

TEST(Metrics, ConfusionAccuracyMiou) {
  const Array labels = Array::from_vector<std::int32_t>({0, 0, 1, 1, 2, -1, 2}, Shape{7});
  const Array pred = Array::from_vector<std::int32_t>({0, 1, 1, 1, 0, 2, 2}, Shape{7});
  const Array cm = nn::confusion_matrix(pred, labels, 3, -1);
  EXPECT_EQ(cm.dtype(), DType::i64);
  EXPECT_EQ(cm.to_vector<std::int64_t>(), (std::vector<std::int64_t>{1, 1, 0, 0, 2, 0, 1, 0, 1}));
  EXPECT_DOUBLE_EQ(nn::accuracy(cm), 4.0 / 6.0);
  const std::vector<double> iou = nn::iou_per_class(cm);
  EXPECT_DOUBLE_EQ(iou[0], 1.0 / 3.0);  // tp 1, fp 1, fn 1
  EXPECT_DOUBLE_EQ(iou[1], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(iou[2], 1.0 / 2.0);
  EXPECT_DOUBLE_EQ(nn::miou(cm), (1.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0);
  // From scores: argmax, ties to the lower class.
  const Array scores = Array::from_vector<float>({1, 1, 0, 0, 2, 5, 3, 3, 3}, Shape{3, 3});
  const Array cm2 = nn::confusion_matrix(scores, Array::from_vector<std::int32_t>({0, 2, 1}, Shape{3}), 3);
  EXPECT_EQ(cm2.to_vector<std::int64_t>(), (std::vector<std::int64_t>{1, 0, 0, 1, 0, 0, 0, 0, 1}));
  // A class absent everywhere is left out of the mean; an empty matrix gives 0.
  const Array cm3 = nn::confusion_matrix(Array::from_vector<std::int64_t>({0}, Shape{1}),
                                         Array::from_vector<std::int32_t>({0}, Shape{1}), 4);
  EXPECT_TRUE(std::isnan(nn::iou_per_class(cm3)[2]));
  EXPECT_DOUBLE_EQ(nn::miou(cm3), 1.0);
  const Array empty = nn::confusion_matrix(Array::zeros(Shape{0}, DType::i32), Array::zeros(Shape{0}, DType::i32), 2);
  EXPECT_EQ(nn::accuracy(empty), 0.0);
  EXPECT_EQ(nn::miou(empty), 0.0);
}

TEST(Metrics, Errors) {
  const Array labels = Array::from_vector<std::int32_t>({0, 1}, Shape{2});
  expect_error<ValueError>([&] { nn::confusion_matrix(labels, labels, 0); }, {"'num_classes'"});
  expect_error<ValueError>(
      [&] {
        nn::confusion_matrix(Array::from_vector<std::int32_t>({0, 5}, Shape{2}), labels, 2);
      },
      {"[confusion_matrix]", "'pred'", "entry 1 is 5"});
  expect_error<ValueError>(
      [&] {
        nn::confusion_matrix(labels, Array::from_vector<std::int32_t>({3, 0}, Shape{2}), 2);
      },
      {"'labels'", "entry 0 is 3"});
  expect_error<ValueError>(
      [&] {
        nn::confusion_matrix(Array::zeros(Shape{2, 3}, DType::f32), labels, 2);
      },
      {"'pred'", "(N, 2)"});
  expect_error<TypeError>([&] { nn::confusion_matrix(Array::zeros(Shape{2}, DType::u8), labels, 2); }, {"'pred'"});
  expect_error<ValueError>([&] { nn::confusion_matrix(labels, Array::zeros(Shape{3}, DType::i32), 2); }, {"'labels'"});
  expect_error<TypeError>([&] { nn::miou(Array::zeros(Shape{2, 2}, DType::f32)); }, {"'confusion'", "int64"});
  expect_error<ValueError>([&] { nn::accuracy(Array::zeros(Shape{2, 3}, DType::i64)); }, {"'confusion'", "square"});
}

// Mixed precision: a float16 parameter at 1.0 takes AdamW steps of about
// 1e-4 (Adam normalises the step to lr), a fifth of half an ulp of float16 at
// 1.0 (2^-11). Without a master copy every update rounds away; with one the
// float32 copy follows the float64 reference and the parameter is its rounding.
TEST(Optim, AdamWMasterWeightsKeepSubUlpUpdates) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double lr = dtype == DType::f16 ? 1e-4 : 1e-3;  // bf16's half ulp at 1.0 is 2^-8
    auto run = [&](nn::Parameter& p, AdamW& opt, AdamRef& ref, std::vector<double>& ref_p) {
      for (int s = 0; s < 12; ++s) {
        const Array g = Array::full(Shape{4}, dtype, s % 3 == 0 ? -1.0 : 1.0, Device::cpu());
        p->grad = g;
        opt.step();
        ref.step(ref_p, to_doubles(g));
      }
    };
    const AdamWOptions plain{.lr = lr, .weight_decay = 0.0};
    AdamWOptions mixed = plain;
    mixed.master_weights = true;
    // Plain: the parameter never moves.
    {
      nn::Parameter p = nn::make_parameter(Array::full(Shape{4}, dtype, 1.0, Device::cpu()));
      AdamW opt({p}, plain);
      AdamRef ref{plain};
      std::vector<double> ref_p(4, 1.0);
      run(p, opt, ref, ref_p);
      for (double v : to_doubles(p->value)) EXPECT_EQ(v, 1.0);
      for (const auto& [name, a] : opt.state_dict()) EXPECT_EQ(name.find("master"), std::string::npos) << name;
    }
    // Master weights: the copy tracks the reference, the parameter is its rounding.
    nn::Parameter p = nn::make_parameter(Array::full(Shape{4}, dtype, 1.0, Device::cpu()));
    const Array original = p->value;
    AdamW opt({p}, mixed);
    AdamRef ref{mixed};
    std::vector<double> ref_p(4, 1.0);
    run(p, opt, ref, ref_p);
    const nn::StateDict state = opt.state_dict();
    const Array* master = nullptr;
    for (const auto& [name, a] : state)
      if (name == "state.0.master") master = &a;
    ASSERT_NE(master, nullptr);
    EXPECT_EQ(master->dtype(), DType::f32);
    const std::vector<double> m = to_doubles(*master), v = to_doubles(p->value);
    const std::vector<double> rounded = to_doubles(master->astype(dtype));
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_NEAR(m[i], ref_p[i], 1e-6) << i;
      EXPECT_LT(m[i], 1.0) << i;  // the net update is negative (2 of 3 gradients positive)
      EXPECT_EQ(v[i], rounded[i]) << i;
    }
    EXPECT_TRUE(p->value.shares_buffer_with(original)) << "step() must update the parameter in place";
    // The state round trip resumes bit for bit, master copy included.
    nn::Parameter q = nn::make_parameter(p->value.clone());
    AdamW resumed({q}, mixed);
    resumed.load_state_dict(state);
    const Array g = Array::full(Shape{4}, dtype, 1.0, Device::cpu());
    p->grad = g;
    q->grad = g;
    opt.step();
    resumed.step();
    EXPECT_EQ(to_doubles(q->value), to_doubles(p->value));
  }
  // A master copy for a float32 parameter is rejected by name.
  nn::Parameter f = nn::make_parameter(Array::full(Shape{2}, DType::f32, 1.0, Device::cpu()));
  AdamW opt({f}, {.master_weights = true});
  const nn::StateDict bad{{"state.0.exp_avg", Array::zeros(Shape{2}, DType::f32)},
                          {"state.0.exp_avg_sq", Array::zeros(Shape{2}, DType::f32)},
                          {"state.0.step", Array::scalar<std::int64_t>(1, Device::cpu())},
                          {"state.0.master", Array::zeros(Shape{2}, DType::f32)}};
  try {
    opt.load_state_dict(bad);
    ADD_FAILURE() << "expected an error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("state.0.master"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("16-bit"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lattice::testing
