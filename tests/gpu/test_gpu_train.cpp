// CUDA training kernels against the CPU: optimizer updates (several steps,
// every float dtype), cross-entropy and its gradient, confusion counts, the
// sticky label error, and bitwise run-to-run determinism. Skipped without a device.
#include <cmath>
#include <cstring>
#include <vector>

#include "gpu_harness.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing::gpu {
namespace {

using nn::CrossEntropyParams;
using nn::Reduction;

std::vector<unsigned char> raw(const Array& a) {
  const Array h = a.to(Device::cpu());
  std::vector<unsigned char> out(h.nbytes());
  if (!out.empty()) std::memcpy(out.data(), h.raw(), out.size());
  return out;
}

void expect_close(const Array& got, const Array& want, double tol, const char* what) {
  const std::vector<double> g = to_doubles(got.to(Device::cpu()));
  const std::vector<double> w = to_doubles(want.to(Device::cpu()));
  ASSERT_EQ(g.size(), w.size()) << what;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << what << " element " << i;
      continue;
    }
    EXPECT_NEAR(g[i], w[i], tol * (1.0 + std::abs(w[i]))) << what << " element " << i;
  }
}

// Runs `steps` optimizer steps with the same grads on a CPU and a GPU copy.
template <class Opt, class Options>
void compare_optimizer(const Options& options, DType dtype, const Shape& shape, std::uint64_t seed) {
  Rng rng(seed);
  const auto n = static_cast<std::size_t>(shape.numel());
  const Array init = make_array(random_values(rng, n), shape, dtype);
  nn::Parameter cpu_p = nn::make_parameter(init.clone());
  nn::Parameter gpu_p = nn::make_parameter(init.to(k_gpu));
  Opt cpu_opt({cpu_p}, options);
  Opt gpu_opt({gpu_p}, options);
  const double tol = dtype == DType::f64 ? 1e-13 : tolerance_for(dtype);
  for (int s = 0; s < 4; ++s) {
    const Array g = make_array(random_values(rng, n), shape, dtype);
    cpu_p->grad = g;
    gpu_p->grad = g.to(k_gpu);
    cpu_opt.step();
    gpu_opt.step();
    expect_close(gpu_p->value, cpu_p->value, tol, "value");
  }
  const nn::StateDict cs = cpu_opt.state_dict(), gs = gpu_opt.state_dict();
  ASSERT_EQ(cs.size(), gs.size());
  for (std::size_t i = 0; i < cs.size(); ++i) {
    EXPECT_EQ(cs[i].first, gs[i].first);
    EXPECT_EQ(gs[i].second.device(), Device::cpu());
    if (is_floating(cs[i].second.dtype())) expect_close(gs[i].second, cs[i].second, tol, cs[i].first.c_str());
  }
}

class GpuTrain : public GpuTest {};

TEST_F(GpuTrain, OptimizersMatchCpu) {
  const std::vector<Shape> shapes = {Shape{1}, Shape{7, 3}, Shape{3, 3, 3, 16, 8}, Shape{100003}};
  std::uint64_t seed = 1;
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + s.str());
      compare_optimizer<nn::SGD>(nn::SGDOptions{0.1, 0.0, 0.0, 0.0, false}, dt, s, seed++);
      compare_optimizer<nn::SGD>(nn::SGDOptions{0.05, 0.9, 0.1, 0.01, false}, dt, s, seed++);
      compare_optimizer<nn::SGD>(nn::SGDOptions{0.02, 0.8, 0.0, 0.05, true}, dt, s, seed++);
      compare_optimizer<nn::AdamW>(nn::AdamWOptions{}, dt, s, seed++);
      compare_optimizer<nn::AdamW>(nn::AdamWOptions{0.01, 0.8, 0.99, 1e-6, 0.1}, dt, s, seed++);
      // Mixed precision: the float32 master copies (in the state dicts) match too.
      compare_optimizer<nn::AdamW>(nn::AdamWOptions{0.01, 0.8, 0.99, 1e-6, 0.1, true}, dt, s, seed++);
    }
  }
}

TEST_F(GpuTrain, OptimizerStepIsDeterministicAndLoadsState) {
  Rng rng(4);
  const Shape shape{4097, 3};
  const Array init = make_array(random_values(rng, 4097 * 3), shape, DType::f32);
  const Array g = make_array(random_values(rng, 4097 * 3), shape, DType::f32).to(k_gpu);
  std::vector<std::vector<unsigned char>> runs;
  nn::StateDict saved;
  for (int run = 0; run < 2; ++run) {
    nn::Parameter p = nn::make_parameter(init.to(k_gpu));
    nn::AdamW opt({p});
    for (int s = 0; s < 3; ++s) {
      p->grad = g;
      opt.step();
    }
    runs.push_back(raw(p->value));
    saved = opt.state_dict();
  }
  EXPECT_EQ(runs[0], runs[1]);
  // State saved from the GPU loads onto a GPU parameter and continues like the CPU.
  nn::Parameter gp = nn::make_parameter(init.to(k_gpu));
  nn::Parameter cp = nn::make_parameter(init.clone());
  nn::AdamW go({gp}), co({cp});
  go.load_state_dict(saved);
  co.load_state_dict(saved);
  gp->grad = g;
  cp->grad = g.to(Device::cpu());
  go.step();
  co.step();
  EXPECT_EQ(go.state_dict()[2].second.item_int(), 4);
  expect_close(gp->value, cp->value, 1e-5, "resumed");
}

std::vector<std::int32_t> labels_for(Rng& rng, std::int64_t n, std::int64_t c, std::int64_t ignore) {
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < y.size(); ++i) {
    y[i] = i % 4 == 1 ? static_cast<std::int32_t>(ignore) : static_cast<std::int32_t>(rng.integer(0, c - 1));
  }
  return y;
}

TEST_F(GpuTrain, CrossEntropyMatchesCpu) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {{0, 3}, {1, 1}, {37, 5}, {2000, 19}, {70000, 4}};
  const std::vector<CrossEntropyParams> configs = {
      {-100, Reduction::mean, 0.0}, {-100, Reduction::sum, 0.0}, {3, Reduction::mean, 0.1}};
  Rng rng(8);
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (const auto& [n, c] : shapes) {
      std::vector<double> xv = random_values(rng, static_cast<std::size_t>(n * c));
      for (double& v : xv) v *= 6.0;
      const Array x = make_array(xv, Shape{n, c}, dt);
      const Array xg = x.to(k_gpu);
      for (const CrossEntropyParams& p : configs) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(n) + "x" + std::to_string(c));
        const Array y = Array::from_vector(labels_for(rng, n, c, p.ignore_index), Shape{n});
        const Array yg = y.to(k_gpu);
        const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
        const Array lc = nn::cross_entropy(x, y, p);
        const Array lg = nn::cross_entropy(xg, yg, p);
        EXPECT_EQ(lg.device(), k_gpu);
        EXPECT_EQ(lg.dtype(), lc.dtype());
        expect_close(lg, lc, tol, "loss");
        EXPECT_EQ(raw(nn::cross_entropy(xg, yg, p)), raw(lg)) << "loss not deterministic";
        const Array gl = Array::scalar<float>(0.75f);
        const Array dc = nn::cross_entropy_backward(x, y, p, gl);
        const Array dg = nn::cross_entropy_backward(xg, yg, p, gl.to(k_gpu));
        EXPECT_EQ(dg.dtype(), dt);
        expect_close(dg, dc, dt == DType::f64 ? 1e-12 : tolerance_for(dt), "dlogits");
        EXPECT_EQ(raw(nn::cross_entropy_backward(xg, yg, p, gl.to(k_gpu))), raw(dg));
      }
    }
  }
}

TEST_F(GpuTrain, CrossEntropySparseTensorAndAllIgnored) {
  Rng rng(12);
  const std::vector<Coord> coords = random_coords(rng, 2, -6, 6, I3{1, 1, 1}, 0.1);
  const auto n = static_cast<std::int64_t>(coords.size());
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * 4)), Shape{n, 4}, DType::f32);
  const SparseTensor xc = SparseTensor::from_coords(coords_array(coords), feats);
  const SparseTensor xg = xc.to(k_gpu);
  const Array y = Array::from_vector(labels_for(rng, n, 4, -100), Shape{n});
  expect_close(nn::cross_entropy(xg, y.to(k_gpu)), nn::cross_entropy(xc, y), 1e-5, "sparse loss");
  const SparseTensor dg = nn::cross_entropy_backward(xg, y.to(k_gpu));
  EXPECT_EQ(dg.key(), xg.key());
  expect_close(dg.feats(), nn::cross_entropy_backward(xc, y).feats(), 1e-5, "sparse dlogits");
  const Array none = Array::full(Shape{n}, DType::i32, -100.0, k_gpu);
  EXPECT_EQ(nn::cross_entropy(xg, none).item_double(), 0.0);
  const std::vector<double> d = to_doubles(nn::cross_entropy_backward(xg, none).feats().to(Device::cpu()));
  for (double v : d) EXPECT_EQ(v, 0.0);
}

TEST_F(GpuTrain, OutOfRangeLabelIsStickyError) {
  synchronize(k_gpu);
  const Array x = Array::zeros(Shape{3, 4}, DType::f32, k_gpu);
  const Array y = Array::from_vector<std::int32_t>({0, 9, 1}, Shape{3}, k_gpu);
  const Array loss = nn::cross_entropy(x, y);
  try {
    synchronize(k_gpu);
    ADD_FAILURE() << "no device error was recorded";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("[cross_entropy]"), std::string::npos) << what;
    EXPECT_NE(what.find("'labels'"), std::string::npos) << what;
    EXPECT_NE(what.find("row 1 has label 9"), std::string::npos) << what;
  }
  synchronize(k_gpu);
  nn::confusion_matrix(Array::from_vector<std::int32_t>({0, 7, 1}, Shape{3}, k_gpu),
                       Array::from_vector<std::int32_t>({0, 1, 1}, Shape{3}, k_gpu), 4);
  expect_error<ValueError>([] { synchronize(k_gpu); }, {"[confusion_matrix]", "'pred'", "row 1 predicts class 7"});
  synchronize(k_gpu);
}

TEST_F(GpuTrain, ConfusionMatrixMatchesCpu) {
  Rng rng(21);
  const std::int64_t n = 50000, c = 7;
  const Array y = Array::from_vector(labels_for(rng, n, c, -1), Shape{n});
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (auto& v : ids) v = rng.integer(0, c - 1);
  const Array pred = Array::from_vector(ids, Shape{n});
  const Array cc = nn::confusion_matrix(pred, y, c, -1);
  const Array cg = nn::confusion_matrix(pred.to(k_gpu), y.to(k_gpu), c, -1);
  EXPECT_EQ(cg.device(), k_gpu);
  EXPECT_EQ(cg.to_vector<std::int64_t>(), cc.to_vector<std::int64_t>());
  EXPECT_DOUBLE_EQ(nn::miou(cg), nn::miou(cc));
  for (DType dt : {DType::f32, DType::f16, DType::f64}) {
    const Array scores = make_array(random_values(rng, static_cast<std::size_t>(n * c)), Shape{n, c}, dt);
    EXPECT_EQ(nn::confusion_matrix(scores.to(k_gpu), y.to(k_gpu), c, -1).to_vector<std::int64_t>(),
              nn::confusion_matrix(scores, y, c, -1).to_vector<std::int64_t>());
  }
}

}  // namespace
}  // namespace lattice::testing::gpu
