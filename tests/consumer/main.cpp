#include <cstdio>

#include <lattice/lattice.hpp>

int main() {
  const lattice::BackendInfo info = lattice::backend_info();
  const lattice::SparseTensor x = lattice::SparseTensor::from_coords(
      lattice::Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 0, 0, 1, 0, 0}, lattice::Shape{2, 4}),
      lattice::Array::full(lattice::Shape{2, 1}, lattice::DType::f32, 1.0));
  const lattice::SparseTensor y =
      lattice::ops::subm_conv3d(x, lattice::Array::full(lattice::Shape{27, 1, 1}, lattice::DType::f32, 1.0));
  const float v = y.feats().data<float>()[0];
  std::printf("lattice %s: y[0] = %g\n", info.version.c_str(), v);
  return v == 2.0f ? 0 : 1;
}
