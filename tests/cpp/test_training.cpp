// Training end to end on the CPU (issue 5): a tiny sparse network overfits a
// fixed batch with AdamW, one full training step is bitwise reproducible, a
// state_dict survives a safetensors round trip bitwise, and the trainable
// MinkUNet (models::MinkUNetTrainable) runs forward and backward on a small
// simulated scan with a gradient for every parameter.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/autograd.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/module.hpp"
#include "lattice/nn/optim.hpp"
#include "lattice/ops/voxelize.hpp"
#include "lattice/sim/lidar_scene.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using autograd::Variable;

#define LATTICE_RUN_OR_SKIP(stmt)                                               \
  try {                                                                         \
    stmt;                                                                       \
  } catch (const ::lattice::Error& e) {                                         \
    if (std::string(e.what()).find("not implemented yet") != std::string::npos) \
      GTEST_SKIP() << "VJP not landed yet: " << e.what();                       \
    throw;                                                                      \
  }

constexpr int k_in = 4;
constexpr int k_classes = 3;

// A fixed batch: two batch items of random voxels in [-4, 4]^3 (about 360),
// random features and random labels in [0, 3): memorising it needs the
// network to fit every voxel.
struct Batch {
  SparseTensor x;
  Array labels;  // (capacity,) int32
};

Batch fixed_batch(std::uint64_t seed) {
  Rng rng(seed);
  auto m = CoordinateManager::create();
  const std::vector<Coord> coords = random_coords(rng, 2, -4, 4, {1, 1, 1}, 0.25);
  const auto n = static_cast<std::int64_t>(coords.size());
  SparseTensor x = SparseTensor::from_coords(
      coords_array(coords),
      make_array(random_values(rng, static_cast<std::size_t>(n * k_in)), Shape{n, k_in}, DType::f32), {.manager = m});
  std::vector<std::int32_t> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.integer(0, k_classes - 1));
  return {x, Array::from_vector(labels, Shape{n}, Device::cpu())};
}

// SubmConv3d -> BatchNorm -> ReLU -> SubmConv3d -> ReLU -> Linear (3 classes).
std::shared_ptr<nn::Sequential> tiny_net(std::uint64_t seed, int hidden = 32) {
  auto net = std::make_shared<nn::Sequential>();
  nn::ConvOptions c1, c2;
  c1.param.seed = seed;
  c2.param.seed = seed + 10;
  net->append(std::make_shared<nn::SubmConv3d>(k_in, hidden, c1));
  net->append(std::make_shared<nn::BatchNorm>(hidden));
  net->append(std::make_shared<nn::ReLU>());
  net->append(std::make_shared<nn::SubmConv3d>(hidden, hidden, c2));
  net->append(std::make_shared<nn::ReLU>());
  net->append(
      std::make_shared<nn::Linear>(hidden, k_classes, true, nn::ParamOptions{DType::f32, Device::cpu(), seed + 20}));
  return net;
}

// forward, cross-entropy, backward, optimizer step; returns the loss.
double train_step(nn::Module& net, nn::Optimizer& opt, const Batch& b) {
  opt.zero_grad();
  const Variable logits = net.forward(Variable(b.x));
  const Variable loss = autograd::cross_entropy(logits, b.labels);
  autograd::backward(loss);
  opt.step();
  return to_doubles(loss.array())[0];
}

double batch_accuracy(nn::Module& net, const Batch& b) {
  autograd::NoGradGuard no_grad;
  const SparseTensor logits = net.forward(Variable(b.x)).sparse();
  return nn::accuracy(nn::confusion_matrix(logits.feats(), b.labels, k_classes));
}

std::vector<std::vector<double>> parameter_values(const nn::Module& net) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : net.named_parameters()) out.push_back(to_doubles(p->value));
  return out;
}

TEST(Training, TinyNetOverfitsFixedBatch) {
  const Batch b = fixed_batch(7);
  ASSERT_GT(b.x.rows(), 250);
  ASSERT_LT(b.x.rows(), 500);
  auto net = tiny_net(1);
  nn::AdamW opt(net->parameters(), {.lr = 1e-2, .weight_decay = 0.0});
  double first = 0, last = 0;
  // Measured (f32, 392 voxels): loss 1.115 at step 0 (chance: ln 3 = 1.099),
  // 0.098 after 10 steps, 0.0030 after 100; accuracy 1.0. Bounds with margin:
  // loss < 0.05 after 100 steps and accuracy >= 0.99.
  LATTICE_RUN_OR_SKIP(first = train_step(*net, opt, b));
  for (int step = 1; step < 100; ++step) last = train_step(*net, opt, b);
  EXPECT_GT(first, 0.9);
  EXPECT_LT(last, 0.05) << "first loss " << first;
  EXPECT_GE(batch_accuracy(*net, b), 0.99);
}

TEST(Training, OneStepIsBitwiseDeterministic) {
  const Batch b = fixed_batch(11);
  auto run = [&](std::vector<std::vector<double>>& params, std::vector<double>& buffers) {
    auto net = tiny_net(3);
    nn::AdamW opt(net->parameters(), {.lr = 1e-2});
    const double loss = train_step(*net, opt, b);
    params = parameter_values(*net);
    for (const auto& [name, a] : net->named_buffers()) {
      const auto v = to_doubles(a);
      buffers.insert(buffers.end(), v.begin(), v.end());
    }
    return loss;
  };
  std::vector<std::vector<double>> p1, p2;
  std::vector<double> b1, b2;
  double l1 = 0, l2 = 0;
  LATTICE_RUN_OR_SKIP(l1 = run(p1, b1));
  l2 = run(p2, b2);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(b1, b2);
  // The step changed the parameters (a no-op would pass trivially).
  auto fresh = tiny_net(3);
  EXPECT_NE(parameter_values(*fresh), p1);
}

TEST(Training, SaveLoadRoundTripIsBitwise) {
  const Batch b = fixed_batch(5);
  auto net = tiny_net(4);
  nn::AdamW opt(net->parameters(), {.lr = 1e-2});
  LATTICE_RUN_OR_SKIP(train_step(*net, opt, b));
  for (int i = 0; i < 3; ++i) train_step(*net, opt, b);  // running statistics move too
  const auto path = std::filesystem::temp_directory_path() / "lattice_test_training_roundtrip.safetensors";
  io::save_safetensors(path.string(), net->state_dict(), {{"format", "lattice"}});
  auto fresh = tiny_net(99);
  fresh->load_state_dict(io::load_safetensors(path.string()));
  std::filesystem::remove(path);
  EXPECT_EQ(parameter_values(*fresh), parameter_values(*net));
  for (bool training : {false, true}) {
    net->train(training);
    fresh->train(training);
    autograd::NoGradGuard no_grad;
    EXPECT_EQ(to_doubles(net->forward(Variable(b.x)).sparse().feats()),
              to_doubles(fresh->forward(Variable(b.x)).sparse().feats()))
        << "training " << training;
  }
  // A state dict of another architecture is rejected before anything changes.
  auto other = std::make_shared<nn::Sequential>();
  other->append(std::make_shared<nn::Linear>(4, 3));
  EXPECT_ANY_THROW(fresh->load_state_dict(other->state_dict()));
  EXPECT_EQ(parameter_values(*fresh), parameter_values(*net));
}

// ---- the trainable MinkUNet ---------------------------------------------------

// A small simulated scan, voxelized at 0.4 m: a few thousand voxels.
SparseTensor small_scan() {
  sim::LidarSceneOptions o;
  o.seed = 3;
  o.beams = 16;
  o.azimuth_steps = 400;
  const io::PointCloud cloud = sim::simulate_lidar_scan(o);
  const std::int64_t n = cloud.size();
  Array feats = Array::full(Shape{n, k_in}, DType::f32, 1.0, Device::cpu());
  return ops::voxelize(cloud.positions, feats, {.voxel_size = 0.4, .manager = CoordinateManager::create()}).tensor;
}

TEST(MinkUNetTrainable, ForwardShapeAndGradientsReachEveryParameter) {
  const SparseTensor x = small_scan();
  ASSERT_GT(x.rows(), 100);
  models::MinkUNetTrainableConfig config;
  config.in_channels = k_in;
  config.num_classes = 5;
  config.width = 4;
  config.blocks = {1, 1, 1, 1, 1, 1, 1, 1};
  models::MinkUNetTrainable net(config);
  Variable logits;
  LATTICE_RUN_OR_SKIP(logits = net.forward(Variable(x)));
  ASSERT_TRUE(logits.is_sparse());
  EXPECT_EQ(logits.sparse().rows(), x.rows());
  EXPECT_EQ(logits.sparse().channels(), 5);
  EXPECT_EQ(to_doubles(logits.sparse().coords()), to_doubles(x.coords()));  // on x's coordinates
  std::vector<std::int32_t> labels(static_cast<std::size_t>(x.capacity()));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i % 5);
  const Variable loss = autograd::cross_entropy(logits, Array::from_vector(labels, Shape{x.capacity()}, Device::cpu()));
  autograd::backward(loss);
  const auto named = net.named_parameters();
  EXPECT_GT(named.size(), 40u);
  for (const auto& [name, p] : named) {
    ASSERT_TRUE(p->grad.has_value()) << name;
    double sq = 0;
    for (double g : to_doubles(*p->grad)) sq += g * g;
    EXPECT_TRUE(std::isfinite(sq)) << name;
    EXPECT_GT(sq, 0.0) << name;
  }
  // Documented names.
  EXPECT_EQ(named.front().first, "stem.conv1.weight");
  EXPECT_EQ(named.back().first, "head.bias");
}

TEST(MinkUNetTrainable, VariantsAndErrors) {
  EXPECT_EQ(models::MinkUNetTrainableConfig::variant(18).blocks, (std::array<int, 8>{2, 2, 2, 2, 2, 2, 2, 2}));
  EXPECT_EQ(models::MinkUNetTrainableConfig::variant(34).blocks, (std::array<int, 8>{2, 3, 4, 6, 2, 2, 2, 2}));
  EXPECT_EQ(models::MinkUNetTrainableConfig::variant(42).blocks, (std::array<int, 8>{2, 2, 2, 2, 2, 2, 2, 2}));
  expect_error<ValueError>([] { (void)models::MinkUNetTrainableConfig::variant(50); },
                           {"MinkUNetTrainableConfig.variant", "depth", "50"});
  models::MinkUNetTrainableConfig bad;
  bad.width = 0;
  expect_error<ValueError>([&] { models::MinkUNetTrainable m(bad); }, {"MinkUNetTrainable", "width"});
  bad = {};
  bad.blocks[3] = 0;
  expect_error<ValueError>([&] { models::MinkUNetTrainable m(bad); }, {"MinkUNetTrainable", "blocks"});
  bad = {};
  bad.dtype = DType::i32;
  expect_error<TypeError>([&] { models::MinkUNetTrainable m(bad); }, {"MinkUNetTrainable", "dtype"});
  models::MinkUNetTrainableConfig small;
  small.width = 2;
  small.blocks = {1, 1, 1, 1, 1, 1, 1, 1};
  models::MinkUNetTrainable a(small), b(small);
  EXPECT_EQ(parameter_values(a), parameter_values(b));  // deterministic initialisation
  EXPECT_EQ(a.num_parameters(), b.num_parameters());
  small.seed = 1;
  models::MinkUNetTrainable c(small);
  EXPECT_NE(parameter_values(a), parameter_values(c));
  // Widths as models::MinkUNet: 32 | 32 64 128 256 | 256 128 96 96 at width 32.
  models::MinkUNetTrainableConfig full;
  full.blocks = {1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(models::MinkUNetTrainable(full).widths(), (std::array<int, 9>{32, 32, 64, 128, 256, 256, 128, 96, 96}));
  // Inputs: channels, dtype and kind are checked before anything runs.
  const SparseTensor x = small_scan();
  expect_error<ValueError>(
      [&] {
        (void)a.forward(Variable(x.replace_feats(Array::zeros(Shape{x.capacity(), 2}, DType::f32, Device::cpu()))));
      },
      {"MinkUNetTrainable.forward", "'x'", "2 channels"});
  expect_error<TypeError>([&] { (void)a.forward(Variable(x.replace_feats(x.feats().astype(DType::f64)))); },
                          {"MinkUNetTrainable.forward", "'x'", "float64"});
  expect_error<TypeError>([&] { (void)a.forward(Variable(x.feats())); }, {"MinkUNetTrainable.forward", "sparse"});
}

models::MinkUNetTrainableConfig tiny_unet_config() {
  models::MinkUNetTrainableConfig c;
  c.in_channels = k_in;
  c.num_classes = 5;
  c.width = 4;
  c.blocks = {1, 1, 1, 1, 1, 1, 1, 1};
  return c;
}

Array scan_labels(const SparseTensor& x) {
  // Labels that depend on the geometry (height bands of the voxel), so a few
  // steps can make progress; capacity rows past the active ones are ignored.
  std::vector<std::int32_t> labels(static_cast<std::size_t>(x.capacity()), -100);
  const std::int32_t* c = x.coords().data<std::int32_t>();
  for (std::int64_t i = 0; i < x.rows(); ++i) labels[static_cast<std::size_t>(i)] = ((c[4 * i + 3] % 5) + 5) % 5;
  return Array::from_vector(labels, Shape{x.capacity()}, Device::cpu());
}

TEST(MinkUNetTrainable, TrainingStepIsDeterministicAndLossFalls) {
  const SparseTensor x = small_scan();
  const Array labels = scan_labels(x);
  auto run = [&](int steps, std::vector<double>& losses) {
    models::MinkUNetTrainable net(tiny_unet_config());
    nn::AdamW opt(net.parameters(), {.lr = 1e-2});
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      const Variable loss = autograd::cross_entropy(net.forward(Variable(x)), labels);
      autograd::backward(loss);
      opt.step();
      losses.push_back(to_doubles(loss.array())[0]);
    }
    std::vector<std::vector<double>> state;
    for (const auto& [k, v] : net.state_dict()) state.push_back(to_doubles(v));
    return state;
  };
  std::vector<double> l1, l2;
  std::vector<std::vector<double>> s1;
  LATTICE_RUN_OR_SKIP(s1 = run(2, l1));
  const auto s2 = run(2, l2);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(s1, s2);  // parameters and batch-norm buffers, bitwise
  // Measured (f32, width 4): loss 1.70 at step 0 (ln 5 = 1.61), 0.22 after
  // 20 steps, 0.050 after 40. Bound with margin: below 0.25 after 40 steps.
  std::vector<double> l3;
  (void)run(40, l3);
  EXPECT_EQ(l3[0], l1[0]);
  EXPECT_LT(l3.back(), 0.25) << "first " << l3.front() << " last " << l3.back();
}

TEST(MinkUNetTrainable, SafetensorsRoundTripIsBitwise) {
  const SparseTensor x = small_scan();
  models::MinkUNetTrainable net(tiny_unet_config());
  nn::AdamW opt(net.parameters(), {.lr = 1e-2});
  LATTICE_RUN_OR_SKIP(autograd::backward(autograd::cross_entropy(net.forward(Variable(x)), scan_labels(x))));
  opt.step();
  const std::string bytes = io::serialize_safetensors(net.state_dict());
  auto config = tiny_unet_config();
  config.seed = 77;
  models::MinkUNetTrainable fresh(config);
  fresh.load_state_dict(io::deserialize_safetensors(bytes));
  net.eval();
  fresh.eval();
  autograd::NoGradGuard no_grad;
  EXPECT_EQ(to_doubles(net.forward(Variable(x)).sparse().feats()),
            to_doubles(fresh.forward(Variable(x)).sparse().feats()));
  // Eval mode uses the running statistics: a different function from training mode.
  net.train();
  EXPECT_NE(to_doubles(net.forward(Variable(x)).sparse().feats()),
            to_doubles(fresh.forward(Variable(x)).sparse().feats()));
}

}  // namespace
}  // namespace lattice::testing
