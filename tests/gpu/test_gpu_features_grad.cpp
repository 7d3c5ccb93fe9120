// CUDA VJPs of the feature ops, norms, sparse algebra, cat and row subsets
// against the CPU VJPs on the same (rounded) inputs, per element with SPEC §12
// tolerances (scaled by the largest magnitude of the result), several shapes
// and dtypes; and bitwise determinism run to run. Outputs are poisoned first,
// so an element a kernel forgets to write fails.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/features_grad.hpp"
#include "lattice/ops/rows.hpp"

namespace lattice::testing::gpu {
namespace {

using Manager = std::shared_ptr<CoordinateManager>;

constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};

Coord pool_coord(int i) { return {i % 3, i - 500, -2 * i, 7000 - 3 * i}; }

// A tensor on `device` at pool coordinates `ids` with `extra` capacity rows.
struct Pair {
  SparseTensor cpu, gpu;
};
Pair make_pair(const Manager& mc, const Manager& mg, const std::vector<int>& ids, const std::vector<double>& values,
               int c, DType dtype, std::int64_t extra = 3) {
  const auto rows = static_cast<std::int64_t>(ids.size());
  std::vector<Coord> coords;
  for (int id : ids) coords.push_back(pool_coord(id));
  for (std::int64_t i = 0; i < extra; ++i) coords.push_back({0, 90000 + static_cast<int>(i), 0, 0});
  std::vector<double> all = values;
  all.resize(static_cast<std::size_t>((rows + extra) * c), 0.0);
  const Array coords_h = coords_array(coords);
  const Array feats_h = make_array(all, Shape{rows + extra, c}, dtype);
  return {SparseTensor::from_coords(coords_h, feats_h, {.manager = mc, .active_rows = rows}),
          SparseTensor::from_coords(coords_h.to(k_gpu), feats_h.to(k_gpu), {.manager = mg, .active_rows = rows})};
}

std::vector<int> shuffled_ids(Rng& rng, int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = first + i;
  std::shuffle(v.begin(), v.end(), rng.engine());
  return v;
}

std::vector<double> values(Rng& rng, std::int64_t n, double scale = 1.0) {
  auto v = random_values(rng, static_cast<std::size_t>(n));
  for (double& x : v) x *= scale;
  return v;
}

// The GPU array against the CPU one: active rows per element (rows past the
// count are capacity: never read, and on CUDA not written).
// `terms`: the magnitude of the terms an element was formed from, when the
// result itself can cancel to (nearly) zero.
void expect_matches(const Array& gpu, const Array& cpu, std::int64_t rows, DType dtype, const std::string& what,
                    double terms = 0.0) {
  SCOPED_TRACE(what);
  ASSERT_EQ(gpu.shape(), cpu.shape());
  const auto g = to_doubles(gpu.to(Device::cpu()));
  const auto c = to_doubles(cpu);
  const std::size_t cols = gpu.ndim() == 2 ? static_cast<std::size_t>(gpu.dim(1)) : 1;
  const std::size_t active = static_cast<std::size_t>(rows) * cols;
  double scale = 1e-30;
  for (std::size_t i = 0; i < active; ++i) scale = std::max(scale, std::abs(c[i]));
  const double tol = 4 * tolerance_for(dtype == DType::f64 ? DType::f32 : dtype);  // f64: different op order
  for (std::size_t i = 0; i < active; ++i) {
    ASSERT_NEAR(g[i], c[i], tol * std::max({std::abs(c[i]), 0.1 * scale, terms})) << "element " << i;
  }
}

double max_abs(const Array& a) {
  double m = 0;
  for (double v : to_doubles(a.to(Device::cpu()))) m = std::max(m, std::abs(v));
  return m;
}

// The active rows of a sparse tensor's features.
Array active(const SparseTensor& t) { return t.feats().rows(0, t.rows()); }

void expect_bitwise(const Array& a, const Array& b) {
  const Array ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  ASSERT_EQ(ha.shape(), hb.shape());
  const std::size_t bytes = static_cast<std::size_t>(ha.numel()) * itemsize(ha.dtype());
  EXPECT_EQ(bytes == 0 ? 0 : std::memcmp(ha.raw(), hb.raw(), bytes), 0) << "run-to-run difference";
}

class FeaturesGradGpu : public GpuTest {};

TEST_F(FeaturesGradGpu, Activations) {
  Rng rng(1);
  for (DType dtype : k_dtypes) {
    for (int kind = 0; kind <= static_cast<int>(ops::ActivationKind::softplus); ++kind) {
      for (auto [rows, c] : {std::pair{0, 3}, std::pair{1, 1}, std::pair{300, 17}}) {
        const auto mc = CoordinateManager::create();
        const auto mg = CoordinateManager::create();
        const auto ids = shuffled_ids(rng, rows);
        const auto x = make_pair(mc, mg, ids, values(rng, rows * c, 4.0), c, dtype);
        const auto dy = make_pair(mc, mg, ids, values(rng, rows * c), c, dtype);
        const ops::ActivationParams params{static_cast<ops::ActivationKind>(kind), 0.07};
        poison_pool();
        const auto want = ops::activation_backward(x.cpu, x.cpu.replace_feats(dy.cpu.feats()), params);
        const auto got = ops::activation_backward(x.gpu, x.gpu.replace_feats(dy.gpu.feats()), params);
        expect_matches(got.feats(), want.feats(), rows, dtype, "activation " + std::to_string(kind));
        expect_bitwise(active(got),
                       active(ops::activation_backward(x.gpu, x.gpu.replace_feats(dy.gpu.feats()), params)));
      }
    }
  }
}

TEST_F(FeaturesGradGpu, DropoutUsesTheForwardMask) {
  Rng rng(2);
  for (DType dtype : k_dtypes) {
    const auto mc = CoordinateManager::create();
    const auto mg = CoordinateManager::create();
    const int rows = 257, c = 9;
    const auto dy = make_pair(mc, mg, shuffled_ids(rng, rows), values(rng, rows * c), c, dtype);
    for (double p : {0.0, 0.4}) {
      const ops::DropoutParams params{p, 99, true};
      poison_pool();
      const auto got = ops::dropout_backward(dy.gpu, params);
      const auto want = ops::dropout_backward(dy.cpu, params);
      expect_matches(got.feats(), want.feats(), rows, dtype, "dropout");
    }
  }
}

TEST_F(FeaturesGradGpu, Norms) {
  Rng rng(3);
  for (DType dtype : k_dtypes) {
    for (auto [rows, c] : {std::pair{2, 1}, std::pair{37, 5}, std::pair{2000, 40}}) {
      const auto mc = CoordinateManager::create();
      const auto mg = CoordinateManager::create();
      const auto ids = shuffled_ids(rng, rows);
      const auto x = make_pair(mc, mg, ids, values(rng, rows * c, 2.0), c, dtype);
      const auto dyp = make_pair(mc, mg, ids, values(rng, rows * c), c, dtype);
      const SparseTensor dyc = x.cpu.replace_feats(dyp.cpu.feats());
      const SparseTensor dyg = x.gpu.replace_feats(dyp.gpu.feats());
      const Array w = make_array(values(rng, c), Shape{c}, dtype);
      const Array b = make_array(values(rng, c), Shape{c}, dtype);
      const std::string tag = std::string(dtype_name(dtype)) + " rows " + std::to_string(rows);
      // One channel: layer_norm's dx is exactly 0 and rms_norm's is w eps / r^3,
      // both formed from terms up to |dy| |w| / sqrt(eps) that cancel; each
      // backend leaves its own rounding.
      const double cancel = c == 1 ? max_abs(dyc.feats()) * max_abs(w) / std::sqrt(1e-5) : 0.0;
      poison_pool();
      {
        const auto want = ops::layer_norm_backward(x.cpu, dyc, {w, b});
        const auto got = ops::layer_norm_backward(x.gpu, dyg, {w.to(k_gpu), b.to(k_gpu)});
        expect_matches(got.input.feats(), want.input.feats(), rows, dtype, "layer_norm dx " + tag, cancel);
        expect_matches(*got.weight, *want.weight, c, dtype, "layer_norm dw " + tag);
        expect_matches(*got.bias, *want.bias, c, dtype, "layer_norm db " + tag);
        const auto again = ops::layer_norm_backward(x.gpu, dyg, {w.to(k_gpu), b.to(k_gpu)});
        expect_bitwise(active(got.input), active(again.input));
        expect_bitwise(*got.weight, *again.weight);
      }
      {
        const auto want = ops::rms_norm_backward(x.cpu, dyc, {w});
        const auto got = ops::rms_norm_backward(x.gpu, dyg, {w.to(k_gpu)});
        expect_matches(got.input.feats(), want.input.feats(), rows, dtype, "rms_norm dx " + tag, cancel);
        expect_matches(*got.weight, *want.weight, c, dtype, "rms_norm dw " + tag);
      }
      for (bool training : {true, false}) {
        ops::BatchNormArgs args;
        args.weight = make_array(values(rng, c), Shape{c}, DType::f32);
        args.bias = make_array(values(rng, c), Shape{c}, DType::f32);
        args.running_mean = make_array(values(rng, c), Shape{c}, DType::f32);
        args.running_var = Array::full(Shape{c}, DType::f32, 1.5, Device::cpu());
        args.training = training;
        ops::BatchNormArgs gargs = args;
        gargs.weight = args.weight->to(k_gpu);
        gargs.bias = args.bias->to(k_gpu);
        gargs.running_mean = args.running_mean.to(k_gpu);
        gargs.running_var = args.running_var.to(k_gpu);
        const auto want = ops::batch_norm_backward(x.cpu, dyc, args);
        const auto got = ops::batch_norm_backward(x.gpu, dyg, gargs);
        const std::string t = tag + " training " + std::to_string(training);
        expect_matches(got.input.feats(), want.input.feats(), rows, dtype, "batch_norm dx " + t);
        expect_matches(*got.weight, *want.weight, c, DType::f32, "batch_norm dw " + t);
        expect_matches(*got.bias, *want.bias, c, DType::f32, "batch_norm db " + t);
        const auto again = ops::batch_norm_backward(x.gpu, dyg, gargs);
        expect_bitwise(active(got.input), active(again.input));
        expect_bitwise(*got.weight, *again.weight);
      }
    }
  }
}

TEST_F(FeaturesGradGpu, Cat) {
  Rng rng(4);
  for (DType dtype : k_dtypes) {
    for (auto [rows, ca, cb] : {std::tuple{0, 2, 3}, std::tuple{1, 1, 1}, std::tuple{500, 6, 11}}) {
      const auto mc = CoordinateManager::create();
      const auto mg = CoordinateManager::create();
      const auto ids = shuffled_ids(rng, rows);
      const auto a = make_pair(mc, mg, ids, values(rng, rows * ca), ca, dtype);
      const auto bp = make_pair(mc, mg, ids, values(rng, rows * cb), cb, dtype);
      const auto dyp = make_pair(mc, mg, ids, values(rng, rows * (ca + cb)), ca + cb, dtype);
      poison_pool();
      const auto want =
          ops::cat_backward(a.cpu, a.cpu.replace_feats(bp.cpu.feats()), a.cpu.replace_feats(dyp.cpu.feats()));
      const auto got =
          ops::cat_backward(a.gpu, a.gpu.replace_feats(bp.gpu.feats()), a.gpu.replace_feats(dyp.gpu.feats()));
      expect_matches(got.first.feats(), want.first.feats(), rows, dtype, "cat a");
      expect_matches(got.second.feats(), want.second.feats(), rows, dtype, "cat b");
    }
  }
}

TEST_F(FeaturesGradGpu, SparseBinaryEveryOpAndJoin) {
  Rng rng(5);
  using ops::BinaryOp;
  using ops::Join;
  for (DType dtype : k_dtypes) {
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::maximum, BinaryOp::minimum}) {
      for (Join join : {Join::inner, Join::outer, Join::left}) {
        for (bool same_key : {false, true}) {
          const auto mc = CoordinateManager::create();
          const auto mg = CoordinateManager::create();
          const int nl = 300, nr = 250, c = 7;
          const auto il = shuffled_ids(rng, nl);
          const auto lhs = make_pair(mc, mg, il, values(rng, nl * c), c, dtype);
          auto rhs = make_pair(mc, mg, shuffled_ids(rng, nr, 120), values(rng, nr * c), c, dtype);
          if (same_key) {
            const auto r = make_pair(mc, mg, il, values(rng, nl * c), c, dtype);
            rhs = {lhs.cpu.replace_feats(r.cpu.feats()), lhs.gpu.replace_feats(r.gpu.feats())};
          }
          const ops::BinaryParams params{join, 0.25, -0.75};
          const auto yc = ops::sparse_binary(op, lhs.cpu, rhs.cpu, params);
          const auto yg = ops::sparse_binary(op, lhs.gpu, rhs.gpu, params);
          const auto rows = yc.rows();
          const auto g = values(rng, yc.capacity() * c);
          const Array dyh = make_array(g, Shape{yc.capacity(), c}, dtype);
          // The GPU output's capacity may exceed the CPU's (outer joins): pad with zeros.
          auto gg = g;
          gg.resize(static_cast<std::size_t>(yg.capacity() * c), 0.0);
          const Array dyd = make_array(gg, Shape{yg.capacity(), c}, dtype).to(k_gpu);
          poison_pool();
          const auto want = ops::sparse_binary_backward(op, lhs.cpu, rhs.cpu, yc.replace_feats(dyh), params);
          const auto got = ops::sparse_binary_backward(op, lhs.gpu, rhs.gpu, yg.replace_feats(dyd), params);
          const std::string tag = std::string(ops::binary_op_name(op)) + " " + std::string(ops::join_name(join)) +
                                  " same_key " + std::to_string(same_key) + " rows " + std::to_string(rows);
          expect_matches(got.lhs.feats(), want.lhs.feats(), nl, dtype, "lhs " + tag);
          expect_matches(got.rhs.feats(), want.rhs.feats(), same_key ? nl : nr, dtype, "rhs " + tag);
          const auto again = ops::sparse_binary_backward(op, lhs.gpu, rhs.gpu, yg.replace_feats(dyd), params);
          expect_bitwise(active(got.lhs), active(again.lhs));
          expect_bitwise(active(got.rhs), active(again.rhs));
        }
      }
    }
  }
}

TEST_F(FeaturesGradGpu, RowSubsets) {
  Rng rng(6);
  for (DType dtype : k_dtypes) {
    const auto mc = CoordinateManager::create();
    const auto mg = CoordinateManager::create();
    const int rows = 400, c = 5;
    const auto x = make_pair(mc, mg, shuffled_ids(rng, rows), values(rng, rows * c), c, dtype);
    std::vector<std::int32_t> keep;
    for (int i = 0; i < rows; i += 3) keep.push_back(static_cast<std::int32_t>((i * 7) % rows));
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    std::shuffle(keep.begin(), keep.end(), rng.engine());
    const Array idx = Array::from_vector(keep, Shape{static_cast<std::int64_t>(keep.size())}, Device::cpu());
    const auto yc = ops::prune(x.cpu, idx);
    const auto yg = ops::prune(x.gpu, idx.to(k_gpu));
    const auto g = values(rng, yc.capacity() * c);
    auto gg = g;
    gg.resize(static_cast<std::size_t>(yg.capacity() * c), 0.0);
    poison_pool();
    const auto want = ops::row_subset_backward(x.cpu, yc.replace_feats(make_array(g, yc.feats().shape(), dtype)));
    const auto got =
        ops::row_subset_backward(x.gpu, yg.replace_feats(make_array(gg, Shape{yg.capacity(), c}, dtype).to(k_gpu)));
    expect_matches(got.feats(), want.feats(), rows, dtype, "prune");
  }
}

}  // namespace
}  // namespace lattice::testing::gpu
