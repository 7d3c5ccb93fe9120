// GPU tests: compiled whenever the CUDA backend is, skipped cleanly when no
// device is visible (CI), run on the GPU machine by scripts/gpu-check.
#include <gtest/gtest.h>

#include "lattice/core/array.hpp"
#include "lattice/core/backend_info.hpp"

namespace lattice {
namespace {

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  }
};

TEST_F(Cuda, BackendInfoListsTheDevice) {
  const BackendInfo info = backend_info();
  ASSERT_FALSE(info.cuda_devices.empty());
  EXPECT_FALSE(info.cuda_devices[0].name.empty());
  EXPECT_TRUE(info.cuda_devices[0].tier == "simt" || info.cuda_devices[0].tier == "mma" ||
              info.cuda_devices[0].tier == "wgmma");
}

TEST_F(Cuda, FillAndCopiesRoundTrip) {
  for (DType t : {DType::f16, DType::bf16, DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::u32}) {
    const Array d = Array::full(Shape{1000, 3}, t, 3.0, Device::cuda(0));
    EXPECT_EQ(d.device(), Device::cuda(0));
    const Array h = d.to(Device::cpu()).astype(DType::f64);
    for (double v : h.to_vector<double>()) ASSERT_EQ(v, 3.0) << dtype_name(t);
  }
  const Array src = Array::from_vector(std::vector<std::int32_t>{1, -2, 3, 4}, Shape{2, 2});
  const Array back = src.to(Device::cuda(0)).clone().to(Device::cpu());
  EXPECT_EQ(back.to_vector<std::int32_t>(), src.to_vector<std::int32_t>());
  EXPECT_EQ(Array::scalar<std::int32_t>(42, Device::cuda(0)).item_int(), 42);
}

}  // namespace
}  // namespace lattice
