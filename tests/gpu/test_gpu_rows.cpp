// GPU suite, row selection: every op on CUDA against the CPU on the same
// tensor (active rows below the capacity, batch items shuffled), identical
// selected coordinates, order and feature bits; zeroed capacity rows; bitwise
// run-to-run determinism; sticky device errors for bad indices, counts and
// NaN scores; mixed-device errors.
#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/rows.hpp"

namespace lattice::testing::gpu {
namespace {

struct Pair {
  SparseTensor cpu, gpu;
  std::int64_t rows = 0;
};

// A random tensor on both devices: `batches` items in shuffled order, `spare`
// capacity rows past the active ones (holding distinct coordinates and 1e4s).
Pair random_pair(std::uint64_t seed, DType dtype, int batches, std::int64_t channels, std::int64_t spare,
                 const std::vector<double>& value_pool = {}, int half = 6, double density = 0.3) {
  Rng rng(seed);
  std::vector<Coord> coords = random_coords(rng, batches, -half, half - 1, {2, 2, 2}, density);
  const auto rows = static_cast<std::int64_t>(coords.size());
  for (std::int64_t i = 0; i < spare; ++i) coords.push_back({0, 2 * static_cast<int>(100 + i), 0, 0});
  const auto cap = static_cast<std::int64_t>(coords.size());
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(cap * channels));
  if (!value_pool.empty()) {
    for (double& e : v) e = value_pool[static_cast<std::size_t>(rng.integer(0, std::ssize(value_pool) - 1))];
  }
  for (std::size_t i = static_cast<std::size_t>(rows * channels); i < v.size(); ++i) v[i] = 1e4;
  const Array feats = make_array(v, Shape{cap, channels}, dtype);
  const SparseTensorOptions opt{.stride = Int3{2}, .manager = CoordinateManager::create(), .active_rows = rows};
  SparseTensorOptions gopt = opt;
  gopt.manager = CoordinateManager::create();
  return {SparseTensor::from_coords(coords_array(coords), feats, opt),
          SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu), gopt), rows};
}

std::vector<unsigned char> raw_bytes(const Array& a) { return bytes_of(a); }

// Same rows, same order, same bits; capacity rows past the device count are zero.
void expect_same(const SparseTensor& cpu, const SparseTensor& gpu) {
  const std::int64_t rows = cpu.rows();
  ASSERT_EQ(gpu.rows(), rows);
  EXPECT_EQ(gpu.stride(), cpu.stride());
  EXPECT_EQ(gpu.dtype(), cpu.dtype());
  EXPECT_EQ(gpu.channels(), cpu.channels());
  EXPECT_EQ(coords_from_array(gpu.coords(), rows), coords_from_array(cpu.coords(), rows));
  EXPECT_EQ(raw_bytes(gpu.feats().rows(0, rows)), raw_bytes(cpu.feats().rows(0, rows)));
  const std::int64_t cap = gpu.capacity();
  if (cap > rows) {
    const auto tail_c = raw_bytes(gpu.coords().rows(rows, cap));
    const auto tail_f = raw_bytes(gpu.feats().rows(rows, cap));
    EXPECT_TRUE(std::all_of(tail_c.begin(), tail_c.end(), [](unsigned char b) { return b == 0; }));
    EXPECT_TRUE(std::all_of(tail_f.begin(), tail_f.end(), [](unsigned char b) { return b == 0; }));
  }
}

// Bitwise identical outputs (determinism).
void expect_identical(const SparseTensor& a, const SparseTensor& b) {
  ASSERT_EQ(a.rows(), b.rows());
  EXPECT_EQ(raw_bytes(a.coords()), raw_bytes(b.coords()));
  EXPECT_EQ(raw_bytes(a.feats()), raw_bytes(b.feats()));
}

// The next host-facing call raises the recorded error as a ValueError naming
// the op, the argument and the value.
void expect_sticky(std::string_view op, std::initializer_list<std::string_view> fragments) {
  try {
    synchronize(k_gpu);
    ADD_FAILURE() << "no device error was recorded for " << op;
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::string("[") + std::string(op) + "]"), std::string::npos) << what;
    for (auto f : fragments) EXPECT_NE(what.find(f), std::string::npos) << "lacks \"" << f << "\": " << what;
  }
  synchronize(k_gpu);  // cleared
}

template <class T>
Array vec(const std::vector<T>& v, Device d = Device::cpu()) {
  return Array::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, d);
}

std::vector<std::int64_t> shuffled_rows(Rng& rng, std::int64_t n, std::int64_t m) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  std::shuffle(all.begin(), all.end(), rng.engine());
  all.resize(static_cast<std::size_t>(m));
  return all;
}

Array as_dtype(const std::vector<std::int64_t>& v, DType t) {
  if (t == DType::i64) return vec(v);
  if (t == DType::u8) return vec(std::vector<std::uint8_t>(v.begin(), v.end()));
  return vec(std::vector<std::int32_t>(v.begin(), v.end()));
}

class GpuRows : public GpuParamTest<DType> {};

TEST_P(GpuRows, PruneMatchesTheCpu) {
  const DType dtype = GetParam();
  for (int batches : {1, 4}) {
    const Pair p = random_pair(11 + batches, dtype, batches, 5, 7);
    Rng rng(3);
    for (std::int64_t m : {std::int64_t{0}, std::int64_t{1}, p.rows / 2, p.rows}) {
      for (DType it : {DType::i32, DType::i64}) {
        const Array idx = as_dtype(shuffled_rows(rng, p.rows, m), it);
        poison_pool(16 << 20);
        const SparseTensor g = ops::prune(p.gpu, idx.to(k_gpu));
        expect_same(ops::prune(p.cpu, idx), g);
        expect_identical(g, ops::prune(p.gpu, idx.to(k_gpu)));
      }
    }
  }
}

TEST_P(GpuRows, PruneMaskMatchesTheCpu) {
  const DType dtype = GetParam();
  const Pair p = random_pair(21, dtype, 3, 4, 5);
  Rng rng(4);
  for (DType mt : {DType::u8, DType::i32, DType::i64}) {
    for (std::int64_t len : {p.rows, p.cpu.capacity()}) {
      std::vector<std::int64_t> m(static_cast<std::size_t>(len));
      for (auto& e : m) e = rng.uniform(0, 1) < 0.5 ? rng.integer(1, 3) : 0;
      const Array mask = as_dtype(m, mt);
      poison_pool(16 << 20);
      expect_same(ops::prune_mask(p.cpu, mask), ops::prune_mask(p.gpu, mask.to(k_gpu)));
    }
  }
}

TEST_P(GpuRows, CropMatchesTheCpu) {
  const DType dtype = GetParam();
  const Pair p = random_pair(31, dtype, 3, 3, 4);
  for (const auto& [lo, hi] : std::vector<std::pair<Int3, Int3>>{{Int3{-4, -6, -2}, Int3{4, 2, 8}},
                                                                 {Int3{-1000}, Int3{1000}},
                                                                 {Int3{-12}, Int3{-1}},
                                                                 {Int3{500}, Int3{600}}}) {
    poison_pool(16 << 20);
    expect_same(ops::crop(p.cpu, lo, hi), ops::crop(p.gpu, lo, hi));
  }
}

TEST_P(GpuRows, TopKMatchesTheCpu) {
  const DType dtype = GetParam();
  for (bool ties : {false, true}) {
    const Pair p = ties ? random_pair(41, dtype, 5, 3, 6,
                                      {-0.0, 0.0, 0.5, -0.5, 1.0, -1.0, std::numeric_limits<double>::infinity()})
                        : random_pair(42, dtype, 5, 3, 6);
    Rng rng(5);
    for (double rho : {0.0, 0.25, 0.5, 1.0, 3.0}) {
      for (DType ct : {DType::i32, DType::i64}) {
        std::vector<std::int64_t> counts(6);
        for (auto& c : counts) c = rng.integer(0, 120);
        const Array host_counts = as_dtype(counts, ct);
        poison_pool(16 << 20);
        const SparseTensor c = ops::topk_rows(p.cpu, host_counts, rho);
        const SparseTensor g = ops::topk_rows(p.gpu, host_counts.to(k_gpu), rho);
        expect_same(c, g);
        expect_same(c, ops::topk_rows(p.gpu, host_counts, rho));  // host counts are uploaded
        expect_identical(g, ops::topk_rows(p.gpu, host_counts.to(k_gpu), rho));
      }
    }
  }
}

TEST_P(GpuRows, ReplaceFeatureKeepsTheKey) {
  const DType dtype = GetParam();
  const Pair p = random_pair(51, DType::f32, 2, 3, 4);
  Rng rng(6);
  const Array f =
      make_array(random_values(rng, static_cast<std::size_t>(p.gpu.capacity() * 7)), Shape{p.gpu.capacity(), 7}, dtype);
  const SparseTensor g = ops::replace_feature(p.gpu, f.to(k_gpu));
  EXPECT_EQ(g.key(), p.gpu.key());
  EXPECT_EQ(raw_bytes(g.feats()), raw_bytes(f));
  // Exactly the active rows: padded with zeros to the capacity (the coordinate set is x's own).
  const SparseTensor h = ops::replace_feature(p.gpu, f.rows(0, p.rows).to(k_gpu));
  EXPECT_EQ(h.key(), p.gpu.key());
  EXPECT_EQ(h.coordinate_set(), p.gpu.coordinate_set());
  const SparseTensor hc = ops::replace_feature(p.cpu, f.rows(0, p.rows));
  EXPECT_EQ(raw_bytes(h.feats()), raw_bytes(hc.feats()));
  const auto tail = raw_bytes(h.feats().rows(p.rows, h.capacity()));
  EXPECT_TRUE(std::all_of(tail.begin(), tail.end(), [](unsigned char b) { return b == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuRows, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

class GpuRowsEdge : public GpuTest {};

TEST_F(GpuRowsEdge, LargeTensor) {
  // ~170k rows over many blocks; scores from a small pool, so ties abound.
  const Pair p = random_pair(91, DType::f16, 3, 2, 1000, {-1.0, -0.5, 0.0, 0.25, 0.5, 2.0}, 20, 0.9);
  Rng rng(9);
  const Array counts = as_dtype({40000, 7, 100000, 5}, DType::i64);
  expect_same(ops::topk_rows(p.cpu, counts, 0.5), ops::topk_rows(p.gpu, counts.to(k_gpu), 0.5));
  expect_same(ops::crop(p.cpu, Int3{-20}, Int3{10}), ops::crop(p.gpu, Int3{-20}, Int3{10}));
  const Array idx = as_dtype(shuffled_rows(rng, p.rows, p.rows / 3), DType::i32);
  expect_same(ops::prune(p.cpu, idx), ops::prune(p.gpu, idx.to(k_gpu)));
}

TEST_F(GpuRowsEdge, EmptyAndOneRow) {
  const auto empty =
      SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32, k_gpu),
                                Array::empty(Shape{0, 3}, DType::f32, k_gpu), {.manager = CoordinateManager::create()});
  EXPECT_EQ(ops::prune(empty, vec(std::vector<std::int32_t>{}, k_gpu)).rows(), 0);
  EXPECT_EQ(ops::prune_mask(empty, vec(std::vector<std::uint8_t>{}, k_gpu)).rows(), 0);
  EXPECT_EQ(ops::crop(empty, Int3{-1}, Int3{1}).rows(), 0);
  EXPECT_EQ(ops::topk_rows(empty, vec(std::vector<std::int32_t>{3}, k_gpu), 1.0).rows(), 0);
  EXPECT_EQ(ops::topk_rows(empty, vec(std::vector<std::int64_t>{}), 1.0).rows(), 0);
  synchronize(k_gpu);

  const std::vector<std::int32_t> one{3, -5, 131071, -131072};
  const auto x = SparseTensor::from_coords(Array::from_vector(one, Shape{1, 4}, Device::cpu()).to(k_gpu),
                                           Array::full(Shape{1, 2}, DType::f16, 0.5, k_gpu),
                                           {.manager = CoordinateManager::create()});
  const SparseTensor t = ops::topk_rows(x, vec(std::vector<std::int32_t>{0, 0, 0, 1}), 1.0);
  ASSERT_EQ(t.rows(), 1);
  EXPECT_EQ(t.coords().to_vector<std::int32_t>(), one);
  EXPECT_EQ(ops::topk_rows(x, vec(std::vector<std::int32_t>{0, 0, 0, 1}), 0.5).rows(), 0);
  EXPECT_EQ(ops::crop(x, {-5, 131071, -131072}, {-5, 131071, -131072}).rows(), 1);
  EXPECT_EQ(ops::prune(x, vec(std::vector<std::int64_t>{0}, k_gpu)).rows(), 1);
}

TEST_F(GpuRowsEdge, PrunedTensorRunsASubmConv) {
  const Pair p = random_pair(61, DType::f32, 3, 4, 0);
  Rng rng(7);
  const Array idx = as_dtype(shuffled_rows(rng, p.rows, p.rows / 2), DType::i64);
  const SparseTensor c = ops::prune(p.cpu, idx), g = ops::prune(p.gpu, idx.to(k_gpu));
  const Array w = make_array(random_values(rng, 27 * 4 * 5), Shape{27, 4, 5}, DType::f32);
  const SparseTensor yc = ops::subm_conv3d(c, w), yg = ops::subm_conv3d(g, w.to(k_gpu));
  ASSERT_EQ(yg.rows(), yc.rows());
  const auto a = to_doubles(yc.feats().rows(0, yc.rows())), b = to_doubles(yg.feats().rows(0, yg.rows()));
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * (1 + std::abs(a[i]))) << i;
  // A cropped tensor (count on the device) too.
  const SparseTensor cc = ops::crop(p.cpu, Int3{-6}, Int3{4}), cg = ops::crop(p.gpu, Int3{-6}, Int3{4});
  EXPECT_EQ(ops::subm_conv3d(cg, w.to(k_gpu)).rows(), ops::subm_conv3d(cc, w).rows());
}

TEST_F(GpuRowsEdge, DeviceErrors) {
  const Pair p = random_pair(71, DType::f32, 2, 2, 3);
  synchronize(k_gpu);
  (void)ops::prune(p.gpu, vec(std::vector<std::int32_t>{0, static_cast<std::int32_t>(p.rows)}, k_gpu));
  expect_sticky("prune", {"'rows'", "entry 1"});
  (void)ops::prune(p.gpu, vec(std::vector<std::int64_t>{-3}, k_gpu));
  expect_sticky("prune", {"'rows'", "-3"});
  (void)ops::prune(p.gpu, vec(std::vector<std::int64_t>{1, 0, 1}, k_gpu));
  expect_sticky("prune", {"'rows'", "entries 0 and 2"});

  (void)ops::topk_rows(p.gpu, vec(std::vector<std::int32_t>{4, -1}, k_gpu), 1.0);
  expect_sticky("topk_rows", {"'counts'", "entry 1 is -1"});
  (void)ops::topk_rows(p.gpu, vec(std::vector<std::int64_t>{4}, k_gpu), 1.0);
  expect_sticky("topk_rows", {"'counts'", "batch index 1"});
  const Array f = Array::full(Shape{p.gpu.capacity(), 2}, DType::f32, 1.0, Device::cpu());
  f.data<float>()[2 * (p.rows - 1)] = std::nanf("");
  (void)ops::topk_rows(p.gpu.replace_feats(f.to(k_gpu)), vec(std::vector<std::int32_t>{4, 4}), 1.0);
  expect_sticky("topk_rows", {"'x'", "NaN"});
  // A NaN in a capacity row is no score.
  const Array g = Array::full(Shape{p.gpu.capacity(), 2}, DType::f32, 1.0, Device::cpu());
  g.data<float>()[2 * p.rows] = std::nanf("");
  (void)ops::topk_rows(p.gpu.replace_feats(g.to(k_gpu)), vec(std::vector<std::int32_t>{4, 4}), 1.0);
  synchronize(k_gpu);

  // A mask checked against a count only the device knows (crop's output).
  const SparseTensor c = ops::crop(p.gpu, Int3{-1000}, Int3{1000});
  (void)ops::prune_mask(c, Array::zeros(Shape{1}, DType::u8, k_gpu));
  expect_sticky("prune_mask", {"'mask'", "has 1 entries"});
}

TEST_F(GpuRowsEdge, MixedDevices) {
  const Pair p = random_pair(81, DType::f32, 1, 2, 0);
  expect_error<DeviceError>([&] { ops::prune(p.gpu, vec(std::vector<std::int32_t>{0})); }, {"[prune]", "'rows'"});
  expect_error<DeviceError>([&] { ops::prune(p.cpu, vec(std::vector<std::int32_t>{0}, k_gpu)); },
                            {"[prune]", "'rows'"});
  expect_error<DeviceError>([&] { ops::prune_mask(p.gpu, Array::zeros(Shape{p.rows}, DType::u8, Device::cpu())); },
                            {"[prune_mask]", "'mask'"});
  expect_error<DeviceError>([&] { ops::topk_rows(p.cpu, vec(std::vector<std::int32_t>{1}, k_gpu), 1.0); },
                            {"[topk_rows]", "'counts'"});
  expect_error<DeviceError>(
      [&] {
        ops::replace_feature(p.gpu, Array::zeros(Shape{p.gpu.capacity(), 2}, DType::f32, Device::cpu()));
      },
      {"[replace_feature]", "'feats'"});
  // Host counts are checked on the host.
  expect_error<ValueError>([&] { ops::topk_rows(p.gpu, vec(std::vector<std::int32_t>{-2}), 1.0); },
                           {"[topk_rows]", "'counts'", "entry 0 is -2"});
}

}  // namespace
}  // namespace lattice::testing::gpu
