// Convolution error paths, part 2 (SPEC §14): explicit targets (stride,
// manager, expired keys, coordinate arrays), devices, the key range of
// generated outputs, the relation cache after failed calls, and bytewise
// immutability of every input. Part 1: test_conv_errors.cpp.
#include "support/conv_errors.hpp"

namespace lattice::testing {
namespace {

// ---------------------------------------------------------------------------
// target coordinates

TEST(ConvErrors, TargetWithWrongStride) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const SparseTensor x4 = make_x(m, Int3{4}, 3, DType::f32, 4);
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  // conv3d stride 2 from stride 1 needs a stride-2 target.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                           },
                           {"[conv3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x4.key()});
                           },
                           {"[conv3d]", "'coordinates'", "(4, 4, 4)", "(2, 2, 2)"});
  // Target conv3d with stride 1 needs the input stride, also for a pointwise kernel.
  expect_error<ValueError>(m, [&] { ops::conv3d(x1, w27, std::nullopt, {.coordinates = x2}); },
                           {"[conv3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(
      m,
      [&] {
        ops::conv3d(x1, random_array(Shape{8, 3}), std::nullopt, {.kernel_size = Int3{1}, .coordinates = x2});
      },
      {"[conv3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  // Transposed from stride 2 by 2 needs a stride-1 target.
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x2}); },
                           {"[conv_transpose3d]", "'coordinates'", "(2, 2, 2)", "(1, 1, 1)"});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x4, w8, std::nullopt, {.coordinates = x1.key()}); },
                           {"[conv_transpose3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x4}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", "(4, 4, 4)", "(1, 1, 1)"});
}

TEST(ConvErrors, TargetFromAnotherManager) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  const SparseTensor foreign1 = make_x(other, Int3{1}, 3, DType::f32, 5);
  const SparseTensor foreign4 = make_x(other, Int3{4}, 3, DType::f32, 6);
  const Array w8 = random_array(Shape{8, 3, 8});
  const std::string other_id = std::to_string(other->id());
  const std::string own_id = std::to_string(m->id());
  // A tensor of another manager.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, foreign4});
                           },
                           {"[conv3d]", "'coordinates'", "manager " + other_id, own_id});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1}); },
                           {"[conv_transpose3d]", "'coordinates'", "manager " + other_id});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", "manager " + other_id});
  // A key issued by another manager (even though its id may exist here too).
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, foreign4.key()});
                           },
                           {"[conv3d]", "'coordinates'", foreign4.key().str(), "not issued", own_id});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1.key()}); },
                           {"[conv_transpose3d]", "'coordinates'", foreign1.key().str(), "not issued"});
  expect_error<ValueError>(
      m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = foreign1.key()}); },
      {"[generative_conv_transpose3d]", "'coordinates'", foreign1.key().str()});
  EXPECT_EQ(other->cache_stats().relations, 0U);
}

TEST(ConvErrors, ExpiredTargetKey) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  CoordinateMapKey coarse, fine;
  {
    const SparseTensor t4 = make_x(m, Int3{4}, 3, DType::f32, 8);
    const SparseTensor t1 = make_x(m, Int3{1}, 3, DType::f32, 9);
    coarse = t4.key();
    fine = t1.key();
    ASSERT_NE(m->find(coarse), nullptr);
  }  // the only holders of these sets are gone
  ASSERT_EQ(m->find(coarse), nullptr);
  const Array w8 = random_array(Shape{8, 3, 8});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, coarse});
                           },
                           {"[conv3d]", "'coordinates'", coarse.str(), "no longer exist"});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, w8, std::nullopt, {.coordinates = fine}); },
                           {"[conv_transpose3d]", "'coordinates'", fine.str(), "no longer exist"});
  expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x, w8, std::nullopt, {.coordinates = fine}); },
                           {"[generative_conv_transpose3d]", "'coordinates'", fine.str(), "no longer exist"});
  // A key that was never issued ("no key").
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, CoordinateMapKey{}});
                           },
                           {"[conv3d]", "'coordinates'", "CoordinateMapKey(id=0"});
}

TEST(ConvErrors, TargetCoordinateArrays) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x4 = make_x(m, Int3{4}, 3, DType::f32, 4);
  const Array w8 = random_array(Shape{8, 3, 8});
  // Forward k2 s2 from stride 1 and transposed k2 s2 from stride 4 both target stride 2.
  const auto forward = [&](const Array& target) {
    return ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, target});
  };
  const auto transposed = [&](const Array& target) {
    return ops::conv_transpose3d(x4, w8, std::nullopt, {.coordinates = target});
  };
  const auto generative = [&](const Array& target) {
    return ops::generative_conv_transpose3d(x4, w8, std::nullopt, {.coordinates = target});
  };
  struct Call {
    const char* op;
    std::function<SparseTensor(const Array&)> fn;
  };
  const std::vector<Call> calls{
      {"[conv3d]", forward}, {"[conv_transpose3d]", transposed}, {"[generative_conv_transpose3d]", generative}};
  const Array good = coords_of({0, 2, 4, 6, 1, -2, 0, 8});
  for (const Call& c : calls) {
    SCOPED_TRACE(c.op);
    // dtype
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::f32)); }, {c.op, "'coordinates'", "int32", "float32"});
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::f64)); }, {c.op, "'coordinates'", "float64"});
    expect_error<TypeError>(m, [&] { c.fn(good.astype(DType::i64)); }, {c.op, "'coordinates'", "int64"});
    // width / rank
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(Array::zeros(Shape{2, 3}, DType::i32));
                             },
                             {c.op, "'coordinates'", "(N, 4)", "(2, 3)"});
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(Array::zeros(Shape{2, 5}, DType::i32));
                             },
                             {c.op, "'coordinates'", "(N, 4)", "(2, 5)"});
    expect_error<ValueError>(m, [&] { c.fn(Array::zeros(Shape{8}, DType::i32)); }, {c.op, "'coordinates'", "(8,)"});
    expect_error<ValueError>(m, [&] { c.fn(Array()); }, {c.op, "'coordinates'", "undefined"});
    // not divisible by the output stride 2
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 2, 4, 6, 0, 2, 3, 6}));
                             },
                             {c.op, "'coordinates'", "row 1", "coordinate 3", "axis y", "not divisible", "(2, 2, 2)"});
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, -1, 0, 0}));
                             },
                             {c.op, "'coordinates'", "coordinate -1", "axis x", "not divisible"});
    // duplicates among the target rows
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 2, 2, 2, 0, 4, 4, 4, 0, 2, 2, 2}));
                             },
                             {c.op, "'coordinates'", "rows 0 and 2", "same coordinate", "(0, 2, 2, 2)"});
    // values outside the key range / bad batch
    expect_error<ValueError>(m,
                             [&] {
                               c.fn(coords_of({0, 0, 262144, 0}));
                             },
                             {c.op, "'coordinates'", "262144", "overflows"});
    expect_error<ValueError>(m, [&] { c.fn(coords_of({-1, 0, 0, 0})); }, {c.op, "'coordinates'", "batch index -1"});
    // The good array is accepted by every kind.
    EXPECT_NO_THROW(c.fn(good));
  }
}

TEST(ConvErrors, CudaRequestsInCpuOnlyBuild) {
  const auto backends = backend_info().backends;
  if (std::find(backends.begin(), backends.end(), "cuda") != backends.end()) {
    GTEST_SKIP() << "this build has the CUDA backend; the CPU-only errors do not apply";
  }
  auto m = CoordinateManager::create();
  const SparseTensor x = make_x(m, Int3{2});
  // Memory on a CUDA device cannot be made.
  expect_error<NotCompiledError>(nullptr, [&] { Array::zeros(Shape{27, 3, 8}, DType::f32, Device::cuda()); }, {"CUDA"});
  expect_error<NotCompiledError>(nullptr, [&] { random_array(Shape{27, 3, 8}).to(Device::cuda()); }, {"CUDA"});
  expect_error<NotCompiledError>(nullptr, [&] { x.to(Device::cuda()); }, {"CUDA"});
  expect_error<DeviceError>(nullptr, [&] { set_default_device(Device::cuda()); },
                            {"[set_default_device]", "'device'", "cuda:0"});
  expect_error<DeviceError>(nullptr, [&] { set_default_device(Device::cuda(3)); }, {"'device'", "cuda:3"});
  EXPECT_TRUE(default_device().is_cpu());
  // A zero-element array can claim a CUDA device without memory: the ops
  // must refuse it as a device mismatch rather than touch it.
  const Array w_cuda = Array::empty(Shape{27, 3, 0}, DType::f32, Device::cuda());
  const Array w_zero = Array::empty(Shape{27, 3, 0}, DType::f32, Device::cpu());
  const Array b_cuda = Array::empty(Shape{0}, DType::f32, Device::cuda());
  for (Kind k : k_all_kinds) {
    SCOPED_TRACE(op_name(k));
    expect_error<DeviceError>(m, [&] { run(k, x, w_cuda, std::nullopt); }, {op_name(k), "'weight'", "cuda:0", "cpu"});
    expect_error<DeviceError>(m, [&] { run(k, x, w_zero, b_cuda); }, {op_name(k), "'bias'", "cuda:0", "cpu"});
  }
}

TEST(ConvErrors, TransposedOutputBeyondKeyRange) {
  auto m = CoordinateManager::create();
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array feats = random_array(Shape{1, 3});
  const SparseTensor top = SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), feats, {.manager = m});
  const SparseTensor bottom = SparseTensor::from_coords(coords_of({0, 0, 0, -131072}), feats, {.manager = m});
  // A 3-kernel at stride 1 reaches one step past the largest coordinate.
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(top, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "131071", "(131072, ", "key range"});
  expect_error<ValueError>(
      m, [&] { ops::generative_conv_transpose3d(top, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[generative_conv_transpose3d]", "'x'", "131071", "(131072, ", "key range"});
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(bottom, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "-131072", "-131073)", "key range"});
  // Padding shifts the output the other way.
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(bottom, random_array(Shape{8, 3, 8}), std::nullopt,
                                                   {.kernel_size = Int3{2}, .stride = Int3{1}, .padding = Int3{1}});
                           },
                           {"[conv_transpose3d]", "'x'", "-131073)"});
  // Logical 131071 at stride 2 (physical 262142), doubled by a k2 s2 transposed conv.
  const SparseTensor coarse =
      SparseTensor::from_coords(coords_of({0, 0, 262142, 0}), feats, {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv_transpose3d(coarse, random_array(Shape{8, 3, 8}), std::nullopt, {});
                           },
                           {"[conv_transpose3d]", "'x'", "262142", "key range"});
  // The boundary itself is fine: a 1-kernel keeps the coordinate.
  const SparseTensor y = ops::conv_transpose3d(top, random_array(Shape{1, 3, 8}), std::nullopt,
                                               {.kernel_size = Int3{1}, .stride = Int3{1}});
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()), (std::vector<Coord>{{0, 131071, 0, 0}}));
}

// ---------------------------------------------------------------------------
// state

TEST(ConvErrors, FailedCallsLeaveRelationCacheUnchanged) {
  auto m = CoordinateManager::create();
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  // Warm the cache with a few relations.
  const SparseTensor subm = ops::subm_conv3d(x1, w27);
  const SparseTensor down = ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}});
  const SparseTensor up = ops::conv_transpose3d(x2, w8);
  const RelationCacheStats warm = m->cache_stats();
  ASSERT_EQ(warm.relations, 3U);

  // Failures detected at every stage: arguments, relation geometry, relation building.
  for (int repeat = 0; repeat < 2; ++repeat) {  // a retried failure fails the same way
    SCOPED_TRACE(repeat);
    expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x1, w8); }, {"[conv_transpose3d]", "'stride'"});
    expect_error<ValueError>(m, [&] { ops::generative_conv_transpose3d(x1, w8); },
                             {"[generative_conv_transpose3d]", "'stride'"});
    expect_error<ValueError>(m,
                             [&] {
                               ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                             },
                             {"[conv3d]", "'coordinates'"});
    expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x2, w8, std::nullopt, {.coordinates = x2.key()}); },
                             {"[conv_transpose3d]", "'coordinates'"});
    expect_error<ValueError>(m, [&] { ops::subm_conv3d(x1, w8); }, {"[subm_conv3d]", "'weight'"});
    expect_error<ValueError>(
        m, [&] { ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}, .padding = Int3{-1}}); },
        {"[conv3d]", "'padding'"});
  }
  const SparseTensor edge =
      SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), random_array(Shape{1, 3}), {.manager = m});
  const std::size_t with_edge = m->cache_stats().relations;
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(edge, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "key range"});
  EXPECT_EQ(m->cache_stats().relations, with_edge);

  // The cached relations still serve the same results.
  EXPECT_EQ(bytes_of(ops::subm_conv3d(x1, w27).feats()), bytes_of(subm.feats()));
  EXPECT_EQ(bytes_of(ops::conv_transpose3d(x2, w8).feats()), bytes_of(up.feats()));
  EXPECT_GE(m->cache_stats().hits, warm.hits + 2);
}

TEST(ConvErrors, FailedCallAtCacheCapacityEvictsNothing) {
  // A failed call must not push a live relation out of a full cache either.
  auto m = CoordinateManager::create();
  m->set_cache_capacity(3);
  const SparseTensor x1 = make_x(m, Int3{1});
  const SparseTensor x2 = make_x(m, Int3{2}, 3, DType::f32, 2);
  const SparseTensor edge =
      SparseTensor::from_coords(coords_of({0, 131071, 0, 0}), random_array(Shape{1, 3}), {.manager = m});
  const Array w27 = random_array(Shape{27, 3, 8});
  const Array w8 = random_array(Shape{8, 3, 8});
  ops::subm_conv3d(x1, w27);  // the least recently used entry once the cache is full
  ops::conv3d(x1, w8, std::nullopt, {.kernel_size = Int3{2}, .stride = Int3{2}});
  ops::conv_transpose3d(x2, w8);
  const RelationCacheStats full = m->cache_stats();
  ASSERT_EQ(full.relations, 3U);
  expect_error<ValueError>(
      m, [&] { ops::conv_transpose3d(edge, w27, std::nullopt, {.kernel_size = Int3{3}, .stride = Int3{1}}); },
      {"[conv_transpose3d]", "'x'", "key range"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::conv3d(x1, w8, std::nullopt, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, x1});
                           },
                           {"[conv3d]", "'coordinates'", "(1, 1, 1)", "(2, 2, 2)"});
  EXPECT_EQ(m->cache_stats().evictions, full.evictions) << "a failed call evicted a cached relation";
  // The oldest relation is still cached: using it again is a hit, not a rebuild.
  ops::subm_conv3d(x1, w27);
  EXPECT_EQ(m->cache_stats().misses, full.misses);
  EXPECT_EQ(m->cache_stats().hits, full.hits + 1);
}

// ---------------------------------------------------------------------------
// no op mutates its inputs

struct Snapshot {
  std::vector<unsigned char> coords, feats, active_rows, batch_counts, weight, bias;
  CoordinateMapKey key;
  std::int64_t rows = 0;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

Snapshot snapshot(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias) {
  Snapshot s;
  s.coords = bytes_of(x.coords());
  s.feats = bytes_of(x.feats());
  s.active_rows = bytes_of(x.active_rows());
  if (x.batch_counts()) s.batch_counts = bytes_of(*x.batch_counts());
  s.weight = bytes_of(weight);
  if (bias) s.bias = bytes_of(*bias);
  s.key = x.key();
  s.rows = x.rows();
  return s;
}

// An input with capacity rows past the active ones holding garbage (a
// duplicate and an off-lattice coordinate, huge features).
SparseTensor make_x_with_capacity(const Manager& m, Int3 stride, int cin, DType dtype, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Coord> coords = random_coords(rng, 2, -3, 3, I3{stride.x, stride.y, stride.z}, 0.2);
  const auto active = static_cast<std::int64_t>(coords.size());
  coords.push_back(coords.front());
  coords.push_back({0, 1, 1, 1});
  const auto capacity = static_cast<std::int64_t>(coords.size());
  std::vector<double> values = random_values(rng, static_cast<std::size_t>(active * cin));
  values.resize(static_cast<std::size_t>(capacity * cin), 1e30);
  return SparseTensor::from_coords(coords_array(coords), make_array(values, Shape{capacity, cin}, dtype),
                                   {.stride = stride, .manager = m, .active_rows = active});
}

struct MutationCase {
  std::string name;
  Int3 in_stride;
  DType dtype;
  std::function<Array(int cin, int cout, DType dtype)> weight;
  std::function<SparseTensor(const SparseTensor& x, const Array& w, const std::optional<Array>& b,
                             const SparseTensor& target)>
      call;
  Int3 target_stride{0};  // 0: no target tensor needed
};

Array kernel_major_weight(std::int64_t volume, int cin, int cout, DType dtype) {
  return random_array(Shape{volume, cin, cout}, dtype, 11);
}

std::vector<MutationCase> mutation_cases() {
  using ops::ConvRoute;
  std::vector<MutationCase> out;
  const auto km = [](std::int64_t volume) {
    return [volume](int cin, int cout, DType dt) { return kernel_major_weight(volume, cin, cout, dt); };
  };
  const auto dense = [](int size) {
    return [size](int cin, int cout, DType dt) { return random_array(Shape{cout, size, size, size, cin}, dt, 12); };
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    const std::string d(dtype_name(dt));
    out.push_back({"conv3d_k3_s2_" + d, Int3{1}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{3}, .stride = Int3{2}});
                   }});
    out.push_back({"conv3d_k3_s1_dense5d_" + d, Int3{2}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{3}, .padding = Int3{1}});
                   }});
    out.push_back({"conv3d_pointwise_" + d, Int3{1}, dt,
                   [](int cin, int cout, DType t) {
                     return random_array(Shape{cout, cin}, t, 13);
                   },
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv3d(x, w, b, {.kernel_size = Int3{1}});
                   }});
    out.push_back({"conv3d_target_" + d, Int3{1}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::conv3d(x, w, b, {Int3{2}, Int3{2}, Int3{0}, Int3{1}, t});
                   },
                   Int3{2}});
    out.push_back({"subm_conv3d_" + d, Int3{2}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::subm_conv3d(x, w, b);
                   }});
    out.push_back({"subm_conv3d_dense5d_fetch_on_demand_" + d, Int3{1}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::subm_conv3d(x, w, b, {.route = ConvRoute::fetch_on_demand});
                   }});
    out.push_back({"conv_transpose3d_" + d, Int3{2}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::conv_transpose3d(x, w, b);
                   }});
    out.push_back({"conv_transpose3d_target_dense5d_" + d, Int3{2}, dt, dense(3),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::conv_transpose3d(x, w, b, {.kernel_size = Int3{3}, .coordinates = t.key()});
                   },
                   Int3{1}});
    out.push_back({"generative_conv_transpose3d_" + d, Int3{2}, dt, km(8),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor&) {
                     return ops::generative_conv_transpose3d(x, w, b);
                   }});
    out.push_back({"generative_conv_transpose3d_target_" + d, Int3{4}, dt, km(27),
                   [](const SparseTensor& x, const Array& w, const std::optional<Array>& b, const SparseTensor& t) {
                     return ops::generative_conv_transpose3d(x, w, b, {.kernel_size = Int3{3}, .coordinates = t});
                   },
                   Int3{2}});
  }
  return out;
}

class ConvErrorsNoMutation : public ::testing::TestWithParam<MutationCase> {};

TEST_P(ConvErrorsNoMutation, InputsAreUnchangedBytewise) {
  const MutationCase& c = GetParam();
  auto m = CoordinateManager::create();
  constexpr int cin = 3, cout = 5;
  const SparseTensor x = make_x_with_capacity(m, c.in_stride, cin, c.dtype, 21);
  const Array weight = c.weight(cin, cout, c.dtype);
  for (const bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    const std::optional<Array> bias =
        with_bias ? std::optional<Array>(random_array(Shape{cout}, c.dtype, 14)) : std::nullopt;
    SparseTensor target;
    std::vector<unsigned char> target_coords;
    if (c.target_stride != Int3{0}) {
      target = make_x_with_capacity(m, c.target_stride, 1, c.dtype, 22);
      target_coords = bytes_of(target.coords());
    }
    const Snapshot before = snapshot(x, weight, bias);
    const SparseTensor y = c.call(x, weight, bias, target);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": an input changed";
    if (target.defined()) {
      EXPECT_EQ(bytes_of(target.coords()), target_coords) << c.name << ": the target changed";
      EXPECT_EQ(y.key(), target.key());
    }
    EXPECT_FALSE(y.feats().shares_buffer_with(x.feats()));
    EXPECT_FALSE(y.feats().shares_buffer_with(weight));
    EXPECT_EQ(y.dtype(), c.dtype);
    EXPECT_EQ(y.channels(), cout);
    // A second call (relation cached) sees the same inputs and gives the same bytes.
    const SparseTensor again = c.call(x, weight, bias, target);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": an input changed on the cached path";
    EXPECT_EQ(bytes_of(again.feats()), bytes_of(y.feats())) << c.name;
    EXPECT_EQ(again.key(), y.key());
    // Failed calls do not touch the inputs either.
    EXPECT_THROW(c.call(x, random_array(Shape{2, 2, 2, 2}, c.dtype), bias, target), ValueError);
    EXPECT_TRUE(snapshot(x, weight, bias) == before) << c.name << ": a failed call changed an input";
  }
}

INSTANTIATE_TEST_SUITE_P(ConvErrors, ConvErrorsNoMutation, ::testing::ValuesIn(mutation_cases()),
                         [](const ::testing::TestParamInfo<MutationCase>& info) { return info.param.name; });

}  // namespace
}  // namespace lattice::testing
