// Convolutions: conv3d, subm_conv3d, conv_transpose3d, generative_conv_transpose3d.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"

namespace lattice::python {

namespace {

using I3 = std::array<int, 3>;

// Target support: None, a SparseTensor, a CoordinateMapKey or an (N, 4) int32 array.
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

SparseTensor conv3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias, I3 kernel_size,
                    I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  ops::Conv3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  p.coordinates = target_from(coordinates, "conv3d");
  const Array w = import_array(weight, "conv3d", "weight");
  const std::optional<Array> b = import_optional(bias, "conv3d", "bias");
  return without_gil([&] { return ops::conv3d(x, w, b, p); });
}

SparseTensor subm_conv3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias,
                         I3 kernel_size, I3 dilation) {
  ops::SubmConv3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.dilation = to_int3(dilation);
  const Array w = import_array(weight, "subm_conv3d", "weight");
  const std::optional<Array> b = import_optional(bias, "subm_conv3d", "bias");
  return without_gil([&] { return ops::subm_conv3d(x, w, b, p); });
}

SparseTensor conv_transpose3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias,
                              I3 kernel_size, I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  ops::ConvTranspose3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  p.coordinates = target_from(coordinates, "conv_transpose3d");
  const Array w = import_array(weight, "conv_transpose3d", "weight");
  const std::optional<Array> b = import_optional(bias, "conv_transpose3d", "bias");
  return without_gil([&] { return ops::conv_transpose3d(x, w, b, p); });
}

SparseTensor generative_conv_transpose3d(const SparseTensor& x, const InArray& weight,
                                         const std::optional<InArray>& bias, I3 kernel_size, I3 stride,
                                         nb::handle coordinates) {
  ops::GenerativeConvTranspose3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.coordinates = target_from(coordinates, "generative_conv_transpose3d");
  const Array w = import_array(weight, "generative_conv_transpose3d", "weight");
  const std::optional<Array> b = import_optional(bias, "generative_conv_transpose3d", "bias");
  return without_gil([&] { return ops::generative_conv_transpose3d(x, w, b, p); });
}

}  // namespace

void bind_ops_conv(nb::module_& m) {
  m.def("conv3d", &conv3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("kernel_size"),
        nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("coordinates").none());
  m.def("subm_conv3d", &subm_conv3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("kernel_size"),
        nb::arg("dilation"));
  m.def("conv_transpose3d", &conv_transpose3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(),
        nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"),
        nb::arg("coordinates").none());
  m.def("generative_conv_transpose3d", &generative_conv_transpose3d, nb::arg("x"), nb::arg("weight"),
        nb::arg("bias").none(), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("coordinates").none());
}

}  // namespace lattice::python
