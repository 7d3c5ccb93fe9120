// Feature ops that keep the coordinate identity: linear, activations, batch_norm,
// layer_norm, rms_norm, and same-key add / cat.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/features.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

SparseTensor linear(const SparseTensor& x, const InArray& weight, const std::optional<InArray>& bias) {
  const Array w = import_array(weight, "linear", "weight");
  const std::optional<Array> b = import_optional(bias, "linear", "bias");
  return without_gil([&] { return ops::linear(x, w, b); });
}

SparseTensor activation(const SparseTensor& x, const std::string& kind, double negative_slope) {
  const ops::ActivationParams params{activation_kind(kind, "activation"), negative_slope};
  return without_gil([&] { return ops::activation(x, params); });
}

nb::tuple batch_norm(const SparseTensor& x, const InArray& running_mean, const InArray& running_var,
                     const std::optional<InArray>& weight, const std::optional<InArray>& bias, bool training,
                     double momentum, double eps, int framework) {
  ops::BatchNormArgs args;
  args.running_mean = import_array(running_mean, "batch_norm", "running_mean");
  args.running_var = import_array(running_var, "batch_norm", "running_var");
  args.weight = import_optional(weight, "batch_norm", "weight");
  args.bias = import_optional(bias, "batch_norm", "bias");
  args.training = training;
  args.momentum = momentum;
  args.eps = eps;
  ops::BatchNormResult r = without_gil([&] { return ops::batch_norm(x, args); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(r.output, export_array(r.running_mean, fw), export_array(r.running_var, fw));
}

SparseTensor layer_norm(const SparseTensor& x, const std::optional<InArray>& weight, const std::optional<InArray>& bias,
                        double eps) {
  ops::LayerNormArgs args;
  args.weight = import_optional(weight, "layer_norm", "weight");
  args.bias = import_optional(bias, "layer_norm", "bias");
  args.eps = eps;
  return without_gil([&] { return ops::layer_norm(x, args); });
}

SparseTensor rms_norm(const SparseTensor& x, const std::optional<InArray>& weight, double eps) {
  ops::RmsNormArgs args;
  args.weight = import_optional(weight, "rms_norm", "weight");
  args.eps = eps;
  return without_gil([&] { return ops::rms_norm(x, args); });
}

}  // namespace

void bind_ops_features(nb::module_& m) {
  m.def("linear", &linear, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none());
  m.def("activation", &activation, nb::arg("x"), nb::arg("kind"), nb::arg("negative_slope"));
  m.def("batch_norm", &batch_norm, nb::arg("x"), nb::arg("running_mean"), nb::arg("running_var"),
        nb::arg("weight").none(), nb::arg("bias").none(), nb::arg("training"), nb::arg("momentum"), nb::arg("eps"),
        nb::arg("framework"));
  m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight").none(), nb::arg("bias").none(), nb::arg("eps"));
  m.def("rms_norm", &rms_norm, nb::arg("x"), nb::arg("weight").none(), nb::arg("eps"));
  m.def("add", &ops::add, nb::arg("a"), nb::arg("b"));
  m.def("cat", &ops::cat, nb::arg("a"), nb::arg("b"));
}

}  // namespace lattice::python
