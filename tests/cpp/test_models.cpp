// MinkUNet end to end: shapes, identities and strides per level, determinism,
// and agreement between float32 / float16 and a float64 run of the same weights.
#include <cmath>

#include <gtest/gtest.h>

#include "lattice/core/trace.hpp"
#include "lattice/models/minkunet.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

SparseTensor scene(DType dtype, std::uint64_t seed, int batches = 2) {
  Rng rng(seed);
  const auto coords = random_coords(rng, batches, -12, 11, {1, 1, 1}, 0.06);
  const auto n = static_cast<std::int64_t>(coords.size());
  return SparseTensor::from_coords(coords_array(coords),
                                   make_array(random_values(rng, static_cast<std::size_t>(n * 4)), Shape{n, 4}, dtype),
                                   {.manager = CoordinateManager::create()});
}

TEST(MinkUNet, ShapesIdentitiesAndLayers) {
  const SparseTensor x = scene(DType::f32, 1);
  const models::MinkUNet net({.width = 8}, 7);
  EXPECT_EQ(net.widths(), (std::array<int, 9>{8, 8, 16, 32, 64, 64, 32, 24, 24}));
  TraceSession trace;
  const SparseTensor y = net.forward(x);
  EXPECT_EQ(y.key(), x.key()) << "logits live on the input coordinates";
  EXPECT_EQ(y.channels(), 19);
  EXPECT_EQ(y.rows(), x.rows());
  int convs = 0, down = 0, up = 0;
  for (const OpRecord& r : trace.records()) {
    if (r.flops == 0) continue;
    ++convs;
    EXPECT_EQ(r.flops, 2.0 * static_cast<double>(r.edges) * r.channels_in * r.channels_out) << r.layer;
    if (r.layer.find(".down") != std::string::npos) ++down;
    if (r.layer.find(".up") != std::string::npos) {
      ++up;
      EXPECT_EQ(r.op, "conv_transpose3d");
    }
  }
  EXPECT_EQ(down, 4);
  EXPECT_EQ(up, 4);
  // stem 2 + encoder (4 down + 8 blocks * 2 + 3 shortcuts) + decoder (4 up + 8 blocks * 2 + 4 shortcuts) + head
  EXPECT_EQ(convs, 2 + 4 + 16 + 3 + 4 + 16 + 4 + 1);
}

TEST(MinkUNet, DeterministicBitwiseOnTheCpu) {
  const SparseTensor x = scene(DType::f32, 2);
  const models::MinkUNet net({.width = 8}, 3);
  const auto a = net.forward(x).feats().to_vector<float>();
  const auto b = net.forward(x).feats().to_vector<float>();  // relations now cached
  EXPECT_EQ(a, b);
  const models::MinkUNet same_seed({.width = 8}, 3);
  EXPECT_EQ(same_seed.forward(x).feats().to_vector<float>(), a);
}

TEST(MinkUNet, LowerPrecisionTracksFloat64) {
  // The same network (same seed) in float64, float32 and float16: relative
  // error of the logits stays at the level of each dtype's rounding.
  const SparseTensor x64 = scene(DType::f64, 4, 1);
  const auto ref = to_doubles(models::MinkUNet({.width = 8}, 5, DType::f64).forward(x64).feats());
  double ref_norm = 0;
  for (double v : ref) ref_norm += v * v;
  for (auto [dtype, bound] : {std::pair{DType::f32, 1e-4}, std::pair{DType::f16, 3e-2}}) {
    const SparseTensor x = x64.replace_feats(x64.feats().astype(dtype));
    const auto got = to_doubles(models::MinkUNet({.width = 8}, 5, dtype).forward(x).feats());
    ASSERT_EQ(got.size(), ref.size());
    double err = 0;
    for (std::size_t i = 0; i < got.size(); ++i) err += (got[i] - ref[i]) * (got[i] - ref[i]);
    EXPECT_LT(std::sqrt(err / ref_norm), bound) << dtype_name(dtype);
  }
}

TEST(MinkUNet, RejectsWrongInputs) {
  const models::MinkUNet net({.width = 8}, 1);
  EXPECT_THROW(net.forward(scene(DType::f16, 1)), TypeError);
  const SparseTensor x = scene(DType::f32, 1);
  EXPECT_THROW(net.forward(x.replace_feats(Array::zeros(Shape{x.capacity(), 3}, DType::f32))), ValueError);
  EXPECT_THROW(models::MinkUNet({.width = 0}, 1), ValueError);
}

TEST(MinkUNet, InferenceModeFusesAndTracksFloat64) {
  // Running-statistics batch norm is folded into the convolutions' epilogues.
  const SparseTensor x64 = scene(DType::f64, 6, 1);
  const models::MinkUNetConfig cfg{.width = 8, .batch_statistics = false};
  const auto ref = to_doubles(models::MinkUNet(cfg, 9, DType::f64).forward(x64).feats());
  TraceSession trace;
  const SparseTensor x32 = x64.replace_feats(x64.feats().astype(DType::f32));
  const auto got = to_doubles(models::MinkUNet(cfg, 9, DType::f32).forward(x32).feats());
  for (const OpRecord& r : trace.records()) {
    EXPECT_NE(r.op, "batch_norm") << "inference mode must not run separate batch norms";
    EXPECT_NE(r.op, "add");
  }
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    err += (got[i] - ref[i]) * (got[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  EXPECT_GT(norm, 0.0);
  EXPECT_LT(std::sqrt(err / norm), 1e-4);
}

}  // namespace
}  // namespace lattice::testing
