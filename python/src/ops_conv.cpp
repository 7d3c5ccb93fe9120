// Convolutions: conv3d, subm_conv3d, conv_transpose3d, generative_conv_transpose3d.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

SparseTensor conv3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias, I3 kernel_size,
                    I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  const ops::Conv3dParams p = conv3d_params(kernel_size, stride, padding, dilation, coordinates);
  const Array w = import_array(weight, "conv3d", "weight");
  const std::optional<Array> b = import_optional(bias, "conv3d", "bias");
  return without_gil([&] { return ops::conv3d(x, w, b, p); });
}

SparseTensor subm_conv3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias,
                         I3 kernel_size, I3 dilation) {
  const ops::SubmConv3dParams p = subm_conv3d_params(kernel_size, dilation);
  const Array w = import_array(weight, "subm_conv3d", "weight");
  const std::optional<Array> b = import_optional(bias, "subm_conv3d", "bias");
  return without_gil([&] { return ops::subm_conv3d(x, w, b, p); });
}

SparseTensor conv_transpose3d(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias,
                              I3 kernel_size, I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  const ops::ConvTranspose3dParams p = conv_transpose3d_params(kernel_size, stride, padding, dilation, coordinates);
  const Array w = import_array(weight, "conv_transpose3d", "weight");
  const std::optional<Array> b = import_optional(bias, "conv_transpose3d", "bias");
  return without_gil([&] { return ops::conv_transpose3d(x, w, b, p); });
}

SparseTensor generative_conv_transpose3d(const SparseTensor& x, const InArray& weight,
                                         const std::optional<InArray>& bias, I3 kernel_size, I3 stride,
                                         nb::handle coordinates) {
  const ops::GenerativeConvTranspose3dParams p = generative_conv_transpose3d_params(kernel_size, stride, coordinates);
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
