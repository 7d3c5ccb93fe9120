#include "params.hpp"

#include "lattice/core/coordinates.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::python {

ops::ActivationKind activation_kind(const std::string& kind, const char* op) {
  using K = ops::ActivationKind;
  if (kind == "relu") return K::relu;
  if (kind == "leaky_relu") return K::leaky_relu;
  if (kind == "gelu") return K::gelu;
  if (kind == "gelu_tanh") return K::gelu_tanh;
  if (kind == "silu") return K::silu;
  if (kind == "sigmoid") return K::sigmoid;
  if (kind == "tanh") return K::tanh;
  if (kind == "softplus") return K::softplus;
  fail(op, "kind", "unknown activation '", kind,
       "' (relu, leaky_relu, gelu, gelu_tanh, silu, sigmoid, tanh or softplus)");
}

ops::PoolMode pool_mode(const std::string& mode, const char* op) {
  if (mode == "sum") return ops::PoolMode::sum;
  if (mode == "max") return ops::PoolMode::max;
  if (mode == "avg" || mode == "mean") return ops::PoolMode::avg;
  fail(op, "mode", "unknown pooling mode '", mode, "' (sum, max or avg)");
}

ops::Interpolation interpolation_of(const std::string& name, const char* op) {
  if (name == "linear") return ops::Interpolation::linear;
  if (name == "nearest") return ops::Interpolation::nearest;
  fail(op, "interpolation", "unknown interpolation '", name, "' (linear or nearest)");
}

ops::TargetCoords target_from(nb::handle coordinates, const char* op) {
  if (coordinates.is_none()) return {};
  if (nb::isinstance<SparseTensor>(coordinates)) return {nb::cast<SparseTensor>(coordinates)};
  if (nb::isinstance<CoordinateMapKey>(coordinates)) return {nb::cast<CoordinateMapKey>(coordinates)};
  InArray arr;
  if (!nb::try_cast(coordinates, arr)) {
    fail<TypeError>(op, "coordinates", "expected a SparseTensor, CoordinateMapKey, (N, 4) int32 array or None, got ",
                    nb::inst_name(coordinates).c_str());
  }
  return {import_array(arr, op, "coordinates")};
}

ops::Conv3dParams conv3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  ops::Conv3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  p.coordinates = target_from(coordinates, "conv3d");
  return p;
}

ops::SubmConv3dParams subm_conv3d_params(I3 kernel_size, I3 dilation) {
  ops::SubmConv3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.dilation = to_int3(dilation);
  return p;
}

ops::ConvTranspose3dParams conv_transpose3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation,
                                                   nb::handle coordinates) {
  ops::ConvTranspose3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  p.coordinates = target_from(coordinates, "conv_transpose3d");
  return p;
}

ops::GenerativeConvTranspose3dParams generative_conv_transpose3d_params(I3 kernel_size, I3 stride,
                                                                        nb::handle coordinates) {
  ops::GenerativeConvTranspose3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.coordinates = target_from(coordinates, "generative_conv_transpose3d");
  return p;
}

ops::Pool3dParams pool3d_params(I3 kernel_size, I3 stride, I3 padding, I3 dilation) {
  ops::Pool3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  return p;
}

ops::DevoxelizeParams devoxelize_params(D3 voxel_size, D3 origin, const std::string& interpolation, const char* op) {
  ops::DevoxelizeParams p;
  p.voxel_size = {voxel_size[0], voxel_size[1], voxel_size[2]};
  p.origin = {origin[0], origin[1], origin[2]};
  p.interpolation = interpolation_of(interpolation, op);
  return p;
}

}  // namespace lattice::python
