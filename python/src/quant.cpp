// Quantized weights (SPEC §9): the QuantizedWeight class, quantize_weight,
// dequantize_weight, and the convolutions / linear taking a QuantizedWeight.
// lattice/_quant.py is the documented Python surface.
#include <array>
#include <optional>
#include <string>

#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "lattice/core/quantized_weight.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/quantized.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

QuantizedWeight make(const InArray& weight, const InArray& scales, const InArray& biases, int group_size, int bits,
                     int in_channels, int out_channels, I3 kernel_size, const std::string& layout) {
  constexpr const char* op = "QuantizedWeight";
  return QuantizedWeight(import_array(weight, op, "weight"), import_array(scales, op, "scales"),
                         import_array(biases, op, "biases"), group_size, bits, in_channels, out_channels,
                         to_int3(kernel_size), parse_weight_layout(layout, op, "layout"));
}

QuantizedWeight quantize(const InArray& weight, int bits, std::optional<int> group_size,
                         std::optional<I3> kernel_size) {
  const Array w = import_array(weight, "quantize_weight", "weight");
  QuantizeParams p;
  p.bits = bits;
  p.group_size = group_size;
  if (kernel_size) p.kernel_size = to_int3(*kernel_size);
  return without_gil([&] { return quantize_weight(w, p); });
}

nb::object dequantize(const QuantizedWeight& q, const std::optional<std::string>& dtype, int fw) {
  std::optional<DType> d;
  if (dtype) d = float_dtype(*dtype, "dequantize_weight");
  Array out = without_gil([&] { return dequantize_weight(q, d); });
  return export_array(out, static_cast<Framework>(fw));
}

SparseTensor conv3d(const SparseTensor& x, const QuantizedWeight& w, const std::optional<InArray>& bias, I3 kernel_size,
                    I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  const ops::Conv3dParams p = conv3d_params(kernel_size, stride, padding, dilation, coordinates);
  const std::optional<Array> b = import_optional(bias, "conv3d", "bias");
  return without_gil([&] { return ops::conv3d(x, w, b, p); });
}

SparseTensor subm_conv3d(const SparseTensor& x, const QuantizedWeight& w, const std::optional<InArray>& bias,
                         I3 kernel_size, I3 dilation) {
  const ops::SubmConv3dParams p = subm_conv3d_params(kernel_size, dilation);
  const std::optional<Array> b = import_optional(bias, "subm_conv3d", "bias");
  return without_gil([&] { return ops::subm_conv3d(x, w, b, p); });
}

SparseTensor conv_transpose3d(const SparseTensor& x, const QuantizedWeight& w, const std::optional<InArray>& bias,
                              I3 kernel_size, I3 stride, I3 padding, I3 dilation, nb::handle coordinates) {
  const ops::ConvTranspose3dParams p = conv_transpose3d_params(kernel_size, stride, padding, dilation, coordinates);
  const std::optional<Array> b = import_optional(bias, "conv_transpose3d", "bias");
  return without_gil([&] { return ops::conv_transpose3d(x, w, b, p); });
}

SparseTensor generative_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& w,
                                         const std::optional<InArray>& bias, I3 kernel_size, I3 stride,
                                         nb::handle coordinates) {
  const ops::GenerativeConvTranspose3dParams p = generative_conv_transpose3d_params(kernel_size, stride, coordinates);
  const std::optional<Array> b = import_optional(bias, "generative_conv_transpose3d", "bias");
  return without_gil([&] { return ops::generative_conv_transpose3d(x, w, b, p); });
}

SparseTensor linear(const SparseTensor& x, const QuantizedWeight& w, const std::optional<InArray>& bias) {
  const std::optional<Array> b = import_optional(bias, "linear", "bias");
  return without_gil([&] { return ops::linear(x, w, b); });
}

}  // namespace

void bind_quant(nb::module_& m) {
  nb::class_<QuantizedWeight>(m, "QuantizedWeight")
      .def(nb::new_(&make), nb::arg("weight"), nb::arg("scales"), nb::arg("biases"), nb::arg("group_size"),
           nb::arg("bits"), nb::arg("in_channels"), nb::arg("out_channels"), nb::arg("kernel_size"), nb::arg("layout"))
      .def("weight",
           [](const QuantizedWeight& q, int fw) { return export_array(q.weight(), static_cast<Framework>(fw)); })
      .def("scales",
           [](const QuantizedWeight& q, int fw) { return export_array(q.scales(), static_cast<Framework>(fw)); })
      .def("biases",
           [](const QuantizedWeight& q, int fw) { return export_array(q.biases(), static_cast<Framework>(fw)); })
      .def_prop_ro("group_size", &QuantizedWeight::group_size)
      .def_prop_ro("bits", &QuantizedWeight::bits)
      .def_prop_ro("in_channels", &QuantizedWeight::in_channels)
      .def_prop_ro("out_channels", &QuantizedWeight::out_channels)
      .def_prop_ro("kernel_size",
                   [](const QuantizedWeight& q) {
                     const Int3 k = q.kernel_size();
                     return I3{k.x, k.y, k.z};
                   })
      .def_prop_ro("layout", [](const QuantizedWeight& q) { return std::string(layout_name(q.layout())); })
      .def_prop_ro("dtype", [](const QuantizedWeight& q) { return std::string(dtype_name(q.dtype())); })
      .def_prop_ro("device", [](const QuantizedWeight& q) { return q.device().str(); })
      .def("to", [](const QuantizedWeight& q, const std::string& device) { return q.to(parse_device(device)); });

  m.def("quantize_weight", &quantize, nb::arg("weight"), nb::arg("bits"), nb::arg("group_size").none(),
        nb::arg("kernel_size").none());
  m.def("dequantize_weight", &dequantize, nb::arg("q"), nb::arg("dtype").none(), nb::arg("framework"));
  m.def("quantized_conv3d", &conv3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("kernel_size"),
        nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("coordinates").none());
  m.def("quantized_subm_conv3d", &subm_conv3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(),
        nb::arg("kernel_size"), nb::arg("dilation"));
  m.def("quantized_conv_transpose3d", &conv_transpose3d, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(),
        nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"),
        nb::arg("coordinates").none());
  m.def("quantized_generative_conv_transpose3d", &generative_conv_transpose3d, nb::arg("x"), nb::arg("weight"),
        nb::arg("bias").none(), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("coordinates").none());
  m.def("quantized_linear", &linear, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none());
}

}  // namespace lattice::python
