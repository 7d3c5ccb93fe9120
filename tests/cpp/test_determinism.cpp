// Deterministic mode on the CPU: the switch and its guard, and a training
// step of a small sparse network repeated under it (and with another thread
// count) giving the same bits. The CUDA side is tests/gpu/test_gpu_determinism.cpp.
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>
#include <omp.h>

#include "lattice/autograd.hpp"
#include "lattice/core/backend_info.hpp"
#include "lattice/core/determinism.hpp"
#include "lattice/nn/layers.hpp"
#include "lattice/nn/module.hpp"
#include "lattice/nn/optim.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using autograd::Variable;

TEST(Determinism, SwitchAndGuard) {
  EXPECT_FALSE(deterministic());
  {
    DeterministicGuard on;
    EXPECT_TRUE(deterministic());
    {
      DeterministicGuard off(false);
      EXPECT_FALSE(deterministic());
    }
    EXPECT_TRUE(deterministic());
  }
  EXPECT_FALSE(deterministic());
  set_deterministic(true);
  EXPECT_TRUE(deterministic());
  set_deterministic(false);
}

// Conv (strided) -> BN -> ReLU -> subm conv -> transposed conv back -> Linear:
// three steps of AdamW; returns the loss bits and every parameter's bytes.
std::vector<std::vector<unsigned char>> three_steps(int threads) {
  set_cpu_threads(threads);
  Rng rng(7);
  auto m = CoordinateManager::create();
  const std::vector<Coord> coords = random_coords(rng, 2, -6, 6, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  const SparseTensor x = SparseTensor::from_coords(
      coords_array(coords), make_array(random_values(rng, static_cast<std::size_t>(n * 4)), Shape{n, 4}, DType::f32),
      {.manager = m});
  nn::ConvOptions down, mid, up;
  down.kernel_size = Int3{2};
  down.stride = Int3{2};
  down.param.seed = 1;
  mid.param.seed = 2;
  up.kernel_size = Int3{2};
  up.stride = Int3{2};
  up.param.seed = 3;
  auto d = std::make_shared<nn::Conv3d>(4, 16, down);
  auto bn = std::make_shared<nn::BatchNorm>(16);
  auto s = std::make_shared<nn::SubmConv3d>(16, 16, mid);
  auto u = std::make_shared<nn::ConvTranspose3d>(16, 8, up);
  auto head = std::make_shared<nn::Linear>(8, 3, true, nn::ParamOptions{DType::f32, Device::cpu(), 4});
  nn::Sequential net;
  for (const auto& layer : std::vector<std::shared_ptr<nn::Module>>{d, bn, s, u, head}) net.append(layer);
  nn::AdamW opt(net.parameters(), {.lr = 1e-2});
  std::vector<std::vector<unsigned char>> out;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    const Variable h = net.forward(Variable(x));
    // The transposed conv lands on the children of the coarse set; label its rows by index.
    std::vector<std::int32_t> labels(static_cast<std::size_t>(h.sparse().capacity()));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i % 3);
    const Variable loss = autograd::cross_entropy(
        h, Array::from_vector(labels, Shape{static_cast<std::int64_t>(labels.size())}, Device::cpu()));
    autograd::backward(loss);
    opt.step();
    const double v = to_doubles(loss.array())[0];
    out.emplace_back(reinterpret_cast<const unsigned char*>(&v), reinterpret_cast<const unsigned char*>(&v) + 8);
  }
  for (const auto& [name, v] : net.state_dict()) {
    out.emplace_back(static_cast<const unsigned char*>(v.raw()),
                     static_cast<const unsigned char*>(v.raw()) + v.nbytes());
  }
  return out;
}

TEST(Determinism, TrainingStepsRepeatBitwise) {
  DeterministicGuard guard;
  const int threads = omp_get_max_threads();
  const auto a = three_steps(1);
  const auto b = three_steps(1);
  EXPECT_TRUE(a == b);
  set_cpu_threads(threads);
}

}  // namespace
}  // namespace lattice::testing
