// nn modules (include/lattice/nn/module.hpp, layers.hpp): dotted names,
// state_dict round trips and load errors, deterministic initialisation,
// train/eval behaviour of Dropout and BatchNorm, dtype/device moves, and a
// tiny network (SubmConv3d -> BatchNorm -> ReLU -> Linear) whose gradients
// reach every parameter and match central finite differences in float64.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/autograd.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/module.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using autograd::Value;
using autograd::Variable;

#define LATTICE_RUN_OR_SKIP(stmt)                                               \
  try {                                                                         \
    stmt;                                                                       \
  } catch (const ::lattice::Error& e) {                                         \
    if (std::string(e.what()).find("not implemented yet") != std::string::npos) \
      GTEST_SKIP() << "VJP not landed yet: " << e.what();                       \
    throw;                                                                      \
  }

SparseTensor random_tensor(Rng& rng, const std::shared_ptr<CoordinateManager>& m, int channels, DType dtype) {
  const std::vector<Coord> coords = random_coords(rng, 2, -2, 1, {1, 1, 1}, 0.5);
  const auto n = static_cast<std::int64_t>(coords.size());
  return SparseTensor::from_coords(
      coords_array(coords),
      make_array(random_values(rng, static_cast<std::size_t>(n * channels)), Shape{n, channels}, dtype),
      {.manager = m});
}

std::vector<double> active(const SparseTensor& t) {
  const auto all = to_doubles(t.feats());
  return {all.begin(), all.begin() + static_cast<std::ptrdiff_t>(t.rows() * t.channels())};
}

// L = sum_i c_i * y_i over the active elements, c_i = sin(i + 1): a scalar
// loss recorded with autograd::apply (host code; CPU tensors only).
Variable weighted_sum(const Variable& y) {
  const SparseTensor ys = y.sparse();
  const auto e = active(ys);
  double s = 0;
  std::vector<double> c(e.size());
  for (std::size_t i = 0; i < e.size(); ++i) {
    c[i] = std::sin(static_cast<double>(i) + 1.0);
    s += c[i] * e[i];
  }
  return autograd::apply("test.weighted_sum", Value{make_array({s}, Shape{1}, DType::f64)}, {y},
                         [ys, c](const Value& dy) -> std::vector<std::optional<Value>> {
                           const double g = to_doubles(std::get<Array>(dy))[0];
                           std::vector<double> all(static_cast<std::size_t>(ys.feats().numel()), 0.0);
                           for (std::size_t i = 0; i < c.size(); ++i) all[i] = c[i] * g;
                           return {Value{ys.replace_feats(make_array(all, ys.feats().shape(), ys.dtype()))}};
                         });
}

std::shared_ptr<nn::Sequential> tiny_net(DType dtype, std::uint64_t seed) {
  auto net = std::make_shared<nn::Sequential>();
  nn::ConvOptions conv;
  conv.param = {dtype, Device::cpu(), seed};
  net->append(std::make_shared<nn::SubmConv3d>(2, 4, conv));
  net->append(std::make_shared<nn::BatchNorm>(4, 1e-5, 0.1, true, nn::ParamOptions{dtype, Device::cpu(), 0}));
  net->append(std::make_shared<nn::ReLU>());
  net->append(std::make_shared<nn::Linear>(4, 3, true, nn::ParamOptions{dtype, Device::cpu(), seed + 10}));
  return net;
}

std::vector<std::string> keys(const nn::StateDict& s) {
  std::vector<std::string> out;
  for (const auto& [k, v] : s) out.push_back(k);
  return out;
}

TEST(NnModule, DottedNamesAndShapes) {
  auto net = tiny_net(DType::f32, 1);
  std::vector<std::string> names;
  for (const auto& [n, p] : net->named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}));
  EXPECT_EQ(keys(net->state_dict()),
            (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                      "3.weight", "3.bias"}));
  const auto sd = net->state_dict();
  EXPECT_EQ(sd[0].second.shape(), (Shape{27, 2, 4}));
  EXPECT_EQ(sd[1].second.shape(), (Shape{4}));
  EXPECT_EQ(sd[4].second.dtype(), DType::f32);
  EXPECT_EQ(sd[6].second.shape(), (Shape{3, 4}));
  EXPECT_EQ(net->parameters().size(), 6u);
  EXPECT_EQ(net->named_buffers().size(), 2u);
  nn::ConvOptions nobias;
  nobias.bias = false;
  nn::ConvTranspose3d up(3, 5, nobias);
  ASSERT_EQ(up.named_parameters().size(), 1u);
  EXPECT_EQ(up.weight()->value.shape(), (Shape{8, 3, 5}));  // default kernel 2
  EXPECT_EQ(up.bias(), nullptr);
}

TEST(NnModule, InitIsDeterministicAndBounded) {
  nn::ConvOptions a;
  a.param.seed = 3;
  nn::Conv3d c1(4, 6, a), c2(4, 6, a);
  EXPECT_EQ(to_doubles(c1.weight()->value), to_doubles(c2.weight()->value));
  a.param.seed = 4;
  nn::Conv3d c3(4, 6, a);
  EXPECT_NE(to_doubles(c1.weight()->value), to_doubles(c3.weight()->value));
  const double bound = 1.0 / std::sqrt(4.0 * 27.0);
  double largest = 0;
  for (double w : to_doubles(c1.weight()->value)) largest = std::max(largest, std::abs(w));
  for (double b : to_doubles(c1.bias()->value)) EXPECT_LE(std::abs(b), bound);
  EXPECT_LE(largest, bound);
  EXPECT_GT(largest, 0.9 * bound);  // the whole range is used
  nn::Linear lin(16, 2);
  for (double w : to_doubles(lin.weight()->value)) EXPECT_LE(std::abs(w), 0.25);
}

TEST(NnModule, StateDictRoundTrip) {
  auto m = CoordinateManager::create();
  Rng rng(5);
  const SparseTensor x = random_tensor(rng, m, 2, DType::f32);
  auto a = tiny_net(DType::f32, 1);
  auto b = tiny_net(DType::f32, 2);
  (void)a->forward(Variable(x));  // training: moves a's running statistics
  b->load_state_dict(a->state_dict());
  a->eval();
  b->eval();
  EXPECT_EQ(active(a->forward(Variable(x)).sparse()), active(b->forward(Variable(x)).sparse()));
  const auto sa = a->state_dict();
  const auto sb = b->state_dict();
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(to_doubles(sa[i].second), to_doubles(sb[i].second)) << sa[i].first;
    EXPECT_FALSE(sa[i].second.shares_buffer_with(sb[i].second)) << "load must copy " << sa[i].first;
  }
}

TEST(NnModule, StateDictThroughSafetensors) {
  auto a = tiny_net(DType::f32, 1);
  auto b = tiny_net(DType::f32, 2);
  const TempDir dir;
  const std::string path = (dir / "net.safetensors").string();
  io::save_safetensors(path, a->state_dict());
  b->load_state_dict(io::load_safetensors(path));
  const auto sa = a->state_dict();
  const auto sb = b->state_dict();
  ASSERT_EQ(keys(sa), keys(sb));
  for (std::size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(to_doubles(sa[i].second), to_doubles(sb[i].second));
}

TEST(NnModule, LoadStateDictErrorsChangeNothing) {
  auto net = tiny_net(DType::f32, 1);
  const auto before = net->state_dict();
  auto snapshot = [&] {
    std::vector<std::vector<double>> v;
    for (const auto& [k, a] : net->state_dict()) v.push_back(to_doubles(a));
    return v;
  };
  const auto values = snapshot();
  nn::StateDict changed;
  for (const auto& [k, a] : before) changed.emplace_back(k, Array::zeros(a.shape(), a.dtype()));

  nn::StateDict missing(changed.begin(), changed.end() - 1);
  expect_error<ValueError>(nullptr, [&] { net->load_state_dict(missing); },
                           {"load_state_dict", "missing key '3.bias'"});
  nn::StateDict extra = changed;
  extra.emplace_back("4.weight", Array::zeros(Shape{1}, DType::f32));
  expect_error<ValueError>(nullptr, [&] { net->load_state_dict(extra); }, {"unexpected key '4.weight'"});
  nn::StateDict bad_shape = changed;
  bad_shape[2].second = Array::zeros(Shape{5}, DType::f32);
  expect_error<ValueError>(nullptr, [&] { net->load_state_dict(bad_shape); }, {"'1.weight'", "shape (5,)"});
  nn::StateDict bad_dtype = changed;
  bad_dtype[0].second = Array::zeros(Shape{27, 2, 4}, DType::f64);
  expect_error<TypeError>(nullptr, [&] { net->load_state_dict(bad_dtype); }, {"'0.weight'", "float64"});
  nn::StateDict twice = changed;
  twice.push_back(changed[0]);
  expect_error<ValueError>(nullptr, [&] { net->load_state_dict(twice); }, {"appears twice"});
  EXPECT_EQ(snapshot(), values);

  // Non-strict: the entries given are loaded, the rest kept.
  net->load_state_dict(missing, false);
  const auto after = net->state_dict();
  for (double v : to_doubles(after[0].second)) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(to_doubles(after.back().second), values.back());
}

TEST(NnModule, DtypeConversionAndDevice) {
  auto net = tiny_net(DType::f32, 1);
  const auto w32 = to_doubles(net->parameters()[0]->value);
  net->to(DType::f64);
  for (const auto& p : net->parameters()) EXPECT_EQ(p->value.dtype(), DType::f64);
  for (const auto& [n, b] : net->named_buffers()) EXPECT_EQ(b.dtype(), DType::f32) << n;
  EXPECT_EQ(to_doubles(net->parameters()[0]->value), w32);
  net->to(Device::cpu());
  expect_error<TypeError>(nullptr, [&] { net->to(DType::i32); }, {"nn.Module.to", "dtype"});
}

TEST(NnModule, ConstructorErrors) {
  expect_error<ValueError>(nullptr, [] { nn::Conv3d(0, 2); }, {"nn.Conv3d", "in_channels"});
  expect_error<ValueError>(nullptr, [] { nn::Linear(3, 0); }, {"nn.Linear", "out_features"});
  expect_error<ValueError>(nullptr, [] { nn::Dropout(1.0); }, {"nn.Dropout", "p"});
  expect_error<ValueError>(nullptr, [] { nn::BatchNorm(4, 1e-5, 2.0); }, {"nn.BatchNorm", "momentum"});
  struct Twice : nn::Module {
    Twice() {
      register_parameter("w", nn::make_parameter(Array::zeros(Shape{1}, DType::f32)));
      register_parameter("w", nn::make_parameter(Array::zeros(Shape{1}, DType::f32)));
    }
    Variable forward(const Variable& x) override { return x; }
    std::string type_name() const override { return "Twice"; }
  };
  expect_error<ValueError>(nullptr, [] { Twice t; }, {"already registered"});
}

TEST(NnModule, DropoutTrainEval) {
  auto m = CoordinateManager::create();
  Rng rng(8);
  const SparseTensor x = random_tensor(rng, m, 4, DType::f32);
  nn::Dropout d(0.5, 17);
  const auto y1 = active(d(Variable(x)).sparse());
  const auto y2 = active(d(Variable(x)).sparse());
  EXPECT_EQ(d.calls(), 2u);
  EXPECT_NE(y1, y2) << "the seed advances per call";
  int zeros = 0;
  for (double v : y1) zeros += v == 0.0;
  EXPECT_GT(zeros, 0);
  nn::Dropout fresh(0.5, 17);
  EXPECT_EQ(active(fresh(Variable(x)).sparse()), y1) << "deterministic from the seed";
  d.eval();
  EXPECT_EQ(active(d(Variable(x)).sparse()), active(x));
  EXPECT_EQ(d.calls(), 2u);
}

TEST(NnModule, BatchNormTrainEval) {
  auto m = CoordinateManager::create();
  Rng rng(9);
  const SparseTensor x = random_tensor(rng, m, 4, DType::f32);
  nn::BatchNorm bn(4);
  (void)bn(Variable(x));
  const auto rm = to_doubles(bn.running_mean());
  const auto rv = to_doubles(bn.running_var());
  EXPECT_NE(rm, std::vector<double>(4, 0.0));
  EXPECT_NE(rv, std::vector<double>(4, 1.0));
  bn.eval();
  const auto y = active(bn(Variable(x)).sparse());
  EXPECT_EQ(to_doubles(bn.running_mean()), rm) << "eval keeps the statistics";
  const auto xv = active(x);
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const std::size_t c = i % 4;
    EXPECT_NEAR(y[i], (xv[i] - rm[c]) / std::sqrt(rv[c] + 1e-5), 1e-5);
  }
}

TEST(NnModule, TinyNetworkGradientsReachEveryParameter) {
  auto m = CoordinateManager::create();
  Rng rng(10);
  const SparseTensor x = random_tensor(rng, m, 2, DType::f32);
  auto net = tiny_net(DType::f32, 1);
  LATTICE_RUN_OR_SKIP({
    Variable y = net->forward(Variable(x));
    EXPECT_EQ(y.sparse().channels(), 3);
    const auto sd = y.sparse().feats();
    // weighted_sum works in float64: convert, with the cast's VJP.
    autograd::backward(
        weighted_sum(autograd::apply("test.to_f64", Value{y.sparse().replace_feats(sd.astype(DType::f64))}, {y},
                                     [](const Value& g) -> std::vector<std::optional<Value>> {
                                       const auto& s = std::get<SparseTensor>(g);
                                       return {Value{s.replace_feats(s.feats().astype(DType::f32))}};
                                     })));
  });
  for (const auto& [n, p] : net->named_parameters()) {
    ASSERT_TRUE(p->grad.has_value()) << n;
    EXPECT_EQ(p->grad->shape(), p->value.shape()) << n;
    EXPECT_EQ(p->grad->dtype(), p->value.dtype()) << n;
    double norm = 0;
    for (double g : to_doubles(*p->grad)) norm += g * g;
    EXPECT_GT(norm, 0.0) << n;
  }
  net->zero_grad();
  for (const auto& p : net->parameters()) EXPECT_FALSE(p->grad.has_value());
}

TEST(NnModule, TinyNetworkMatchesFiniteDifferences) {
  auto m = CoordinateManager::create();
  Rng rng(12);
  const SparseTensor x = random_tensor(rng, m, 2, DType::f64);
  auto net = tiny_net(DType::f64, 2);
  Variable xv(x, true);
  LATTICE_RUN_OR_SKIP(autograd::backward(weighted_sum(net->forward(xv))));
  auto loss = [&] {
    const autograd::NoGradGuard guard;
    return to_doubles(weighted_sum(net->forward(Variable(x))).array())[0];
  };
  const double h = 1e-6;
  for (const auto& [n, p] : net->named_parameters()) {
    SCOPED_TRACE(n);
    const auto analytic = to_doubles(*p->grad);
    const Array original = p->value;
    const auto base = to_doubles(original);
    for (std::size_t e = 0; e < base.size(); e += 3) {  // every third element keeps it quick
      auto v = base;
      v[e] = base[e] + h;
      p->value = make_array(v, original.shape(), DType::f64);
      const double lp = loss();
      v[e] = base[e] - h;
      p->value = make_array(v, original.shape(), DType::f64);
      const double lm = loss();
      p->value = original;
      const double numeric = (lp - lm) / (2 * h);
      ASSERT_NEAR(analytic[e], numeric, 1e-6 * (1.0 + std::abs(numeric))) << "element " << e;
    }
  }
  ASSERT_TRUE(xv.grad().has_value());
}

TEST(NnModule, OtherLayersRunForwardAndBackward) {
  auto m = CoordinateManager::create();
  Rng rng(13);
  const SparseTensor x = random_tensor(rng, m, 4, DType::f64);
  nn::ParamOptions p{DType::f64, Device::cpu(), 4};
  nn::ConvOptions c;
  c.param = p;
  std::vector<std::shared_ptr<nn::Module>> mods = {std::make_shared<nn::LayerNorm>(4, 1e-5, true, p),
                                                   std::make_shared<nn::RMSNorm>(4, 1e-5, true, p),
                                                   std::make_shared<nn::LeakyReLU>(0.1),
                                                   std::make_shared<nn::GELU>(),
                                                   std::make_shared<nn::SiLU>(),
                                                   std::make_shared<nn::Sigmoid>(),
                                                   std::make_shared<nn::Tanh>(),
                                                   std::make_shared<nn::Softplus>(),
                                                   std::make_shared<nn::NormalizedSubmConv3d>(4, 4, c),
                                                   std::make_shared<nn::Conv3d>(4, 4, c),
                                                   std::make_shared<nn::MaxPool3d>(),
                                                   std::make_shared<nn::AvgPool3d>(),
                                                   std::make_shared<nn::SumPool3d>()};
  for (const auto& mod : mods) {
    SCOPED_TRACE(mod->type_name());
    Variable xv(x, true);
    LATTICE_RUN_OR_SKIP(autograd::backward(weighted_sum(mod->forward(xv))));
    EXPECT_TRUE(xv.grad().has_value());
    for (const auto& [n, prm] : mod->named_parameters()) EXPECT_TRUE(prm->grad.has_value()) << n;
  }
  nn::GlobalPool gp(ops::PoolMode::avg, 2);
  Variable xv(x, true);
  Variable g = gp(xv);
  EXPECT_EQ(g.array().shape(), (Shape{2, 4}));
  LATTICE_RUN_OR_SKIP(autograd::backward(g, Value{Array::full(Shape{2, 4}, DType::f64, 1.0)}));
  EXPECT_TRUE(xv.grad().has_value());
}

TEST(NnModule, BatchNormRunningStatisticsFollowMomentum) {
  auto m = CoordinateManager::create();
  Rng rng(14);
  const SparseTensor x = random_tensor(rng, m, 3, DType::f64);
  nn::BatchNorm bn(3, 1e-5, 0.25, true, nn::ParamOptions{DType::f64, Device::cpu(), 0});
  (void)bn(Variable(x));
  const auto xv = active(x);
  const auto n = static_cast<double>(x.rows());
  for (std::size_t c = 0; c < 3; ++c) {
    double mean = 0;
    for (std::size_t i = c; i < xv.size(); i += 3) mean += xv[i] / n;
    double ss = 0;
    for (std::size_t i = c; i < xv.size(); i += 3) ss += (xv[i] - mean) * (xv[i] - mean);
    EXPECT_NEAR(to_doubles(bn.running_mean())[c], 0.25 * mean, 1e-6);
    EXPECT_NEAR(to_doubles(bn.running_var())[c], 0.75 + 0.25 * ss / (n - 1), 1e-6);  // unbiased
  }
  // A failing forward (wrong channel count) leaves the statistics alone.
  const auto rm = to_doubles(bn.running_mean());
  EXPECT_ANY_THROW((void)bn(Variable(random_tensor(rng, m, 5, DType::f64))));
  EXPECT_EQ(to_doubles(bn.running_mean()), rm);
}

TEST(NnModule, GradientStepsReduceTheLoss) {
  auto m = CoordinateManager::create();
  Rng rng(15);
  const SparseTensor x = random_tensor(rng, m, 2, DType::f64);
  auto net = tiny_net(DType::f64, 3);
  double first = 0;
  double last = 0;
  for (int step = 0; step < 5; ++step) {
    net->zero_grad();
    Variable loss = weighted_sum(net->forward(Variable(x)));
    last = to_doubles(loss.array())[0];
    if (step == 0) first = last;
    LATTICE_RUN_OR_SKIP(autograd::backward(loss));
    for (const auto& p : net->parameters()) {  // plain SGD on the host
      auto v = to_doubles(p->value);
      const auto g = to_doubles(*p->grad);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] -= 0.05 * g[i];
      p->value = make_array(v, p->value.shape(), DType::f64);
    }
  }
  EXPECT_LT(last, first);
}

}  // namespace
}  // namespace lattice::testing
