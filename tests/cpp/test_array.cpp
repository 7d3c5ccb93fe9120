#include <gtest/gtest.h>

#include "lattice/core/array.hpp"
#include "lattice/core/backend_info.hpp"

namespace lattice {
namespace {

TEST(Array, CreationAndAccess) {
  Array a = Array::full(Shape{2, 3}, DType::f32, 2.5, Device::cpu());
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.nbytes(), 24u);
  EXPECT_EQ(a.row_bytes(), 12u);
  for (float v : a.to_vector<float>()) EXPECT_EQ(v, 2.5f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.raw()) % 64, 0u);
  EXPECT_EQ(a.describe(), "float32(2, 3) on cpu");
}

TEST(Array, ViewsShareBuffers) {
  Array a = Array::from_vector(std::vector<std::int32_t>{0, 1, 2, 3, 4, 5}, Shape{3, 2});
  Array r = a.rows(1, 3);
  EXPECT_EQ(r.to_vector<std::int32_t>(), (std::vector<std::int32_t>{2, 3, 4, 5}));
  EXPECT_TRUE(r.shares_buffer_with(a));
  Array flat = a.reshape(Shape{6});
  EXPECT_EQ(flat.dim(0), 6);
  Array c = a.clone();
  c.data<std::int32_t>()[0] = 42;
  EXPECT_EQ(a.data<std::int32_t>()[0], 0) << "clone must not alias";
  EXPECT_EQ(a.to(Device::cpu()).raw(), a.raw()) << "same-device to() shares";
}

TEST(Array, AstypeConvertsEveryDtype) {
  const Array a = Array::from_vector(std::vector<double>{-2.5, 0.0, 1.0, 3.75}, Shape{4});
  for (DType t : {DType::f16, DType::bf16, DType::f32, DType::f64}) {
    EXPECT_EQ(a.astype(t).astype(DType::f64).to_vector<double>(), (std::vector<double>{-2.5, 0.0, 1.0, 3.75}));
  }
  EXPECT_EQ(a.astype(DType::i32).to_vector<std::int32_t>(), (std::vector<std::int32_t>{-2, 0, 1, 3}));
  EXPECT_EQ(Array::scalar<std::int32_t>(7).item_int(), 7);
}

TEST(Array, ErrorsNameTheProblem) {
  Array a = Array::zeros(Shape{2, 2}, DType::f32);
  EXPECT_THROW(a.data<double>(), TypeError);
  EXPECT_THROW(a.reshape(Shape{3}), ValueError);
  EXPECT_THROW(a.rows(1, 3), ValueError);
  EXPECT_THROW(a.item_int(), ValueError);
  EXPECT_THROW(Array::from_vector(std::vector<float>{1, 2, 3}, Shape{2, 2}), ValueError);
  EXPECT_THROW(Shape({-1, 2}), ValueError);
  try {
    a.to_vector<std::int32_t>();
    FAIL();
  } catch (const TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("int32"), std::string::npos);
  }
}

TEST(Array, EmptyArraysAreValid) {
  Array e = Array::empty(Shape{0, 4}, DType::i32);
  EXPECT_TRUE(e.defined());
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.clone().defined());
  EXPECT_TRUE(e.to_vector<std::int32_t>().empty());
}

TEST(Device, ParseAndDefault) {
  EXPECT_EQ(parse_device("cpu"), Device::cpu());
  EXPECT_EQ(parse_device("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
  EXPECT_THROW(parse_device("gpu"), ValueError);
  EXPECT_THROW(parse_device("cuda:x"), ValueError);
  EXPECT_EQ(default_device(), Device::cpu());
  if (cuda_device_count() == 0) {
    EXPECT_THROW(set_default_device(Device::cuda(0)), DeviceError);
    EXPECT_THROW(Array::zeros(Shape{2}, DType::f32, Device::cuda(0)), Error);
  }
}

TEST(BackendInfo, ReportsCpuAndBlas) {
  const BackendInfo info = backend_info();
  EXPECT_FALSE(info.version.empty());
  ASSERT_FALSE(info.backends.empty());
  EXPECT_EQ(info.backends[0], "cpu");
  EXPECT_FALSE(info.blas.empty());
  EXPECT_GE(info.cpu_threads, 1);
  EXPECT_NE(to_string(info).find("cpu blas"), std::string::npos);
}

TEST(Array, FromExternalWrapsWithoutCopyAndReleasesOwner) {
  auto storage = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4, 5, 6});
  std::weak_ptr<std::vector<float>> watch = storage;
  {
    Array a = Array::from_external(storage->data(), Shape{2, 3}, DType::f32, Device::cpu(), storage);
    storage.reset();  // the array's owner keeps the memory alive
    ASSERT_FALSE(watch.expired());
    EXPECT_EQ(a.raw(), watch.lock()->data());
    EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
    Array view = a.rows(1, 2);  // views share the external buffer
    (*watch.lock())[4] = 50.0f;
    EXPECT_EQ(view.to_vector<float>(), (std::vector<float>{4, 50, 6}));
    Array copy = a.clone();  // a deep copy owns fresh memory
    EXPECT_NE(copy.raw(), a.raw());
    a = Array();
    EXPECT_FALSE(watch.expired());  // `view` still holds the buffer
  }
  EXPECT_TRUE(watch.expired());
}

TEST(Array, FromExternalRejectsNullAndMisalignedData) {
  alignas(8) std::int32_t values[4] = {0, 1, 2, 3};
  EXPECT_THROW(Array::from_external(nullptr, Shape{2}, DType::i32, Device::cpu(), nullptr), ValueError);
  char* misaligned = reinterpret_cast<char*>(values) + 1;
  EXPECT_THROW(Array::from_external(misaligned, Shape{2}, DType::i32, Device::cpu(), nullptr), ValueError);
  const Array empty = Array::from_external(nullptr, Shape{0, 4}, DType::i32, Device::cpu(), nullptr);
  EXPECT_TRUE(empty.defined());
  EXPECT_EQ(empty.numel(), 0);
}

}  // namespace
}  // namespace lattice
