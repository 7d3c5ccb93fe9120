// Vector-Jacobian products (include/lattice/ops/*_grad.hpp) for lattice.torch's
// autograd, plus the forward pieces only autograd needs (dropout with an
// explicit seed, training batch norm with its saved statistics).
//
// Gradients come back as arrays in `framework` (zero copy), active rows only;
// a gradient that was not requested is None.
#include <cstdint>
#include <string>

#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/features_grad.hpp"
#include "lattice/ops/pooling_grad.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

nb::object active(const SparseTensor& t, Framework fw) { return export_array(t.feats().rows(0, t.rows()), fw); }
nb::object maybe(const std::optional<Array>& a, Framework fw) { return a ? export_array(*a, fw) : nb::none(); }
nb::object maybe(const std::optional<SparseTensor>& t, Framework fw) { return t ? active(*t, fw) : nb::none(); }

// Convolution family; `target` is the output structure the forward was given
// (None for submanifold and pointwise).
nb::tuple conv_backward(const std::string& kind, const SparseTensor& x, const InArray& weight, const SparseTensor& dy,
                        I3 kernel_size, I3 stride, I3 padding, I3 dilation, const std::optional<SparseTensor>& target,
                        bool need_input, bool need_weight, bool need_bias, int framework) {
  const char* op = "conv_backward";
  const Array w = import_array(weight, op, "weight");
  const ops::GradRequest need{need_input, need_weight, need_bias};
  const ops::TargetCoords coords = target ? ops::TargetCoords(*target) : ops::TargetCoords();
  // The parameter builders (params.hpp) run with the GIL held; only the VJP runs without it.
  const nb::handle none = nb::none();
  ops::ConvGrads g;
  if (kind == "conv3d") {
    ops::Conv3dParams p = conv3d_params(kernel_size, stride, padding, dilation, none);
    p.coordinates = coords;
    g = without_gil([&] { return ops::conv3d_backward(x, w, dy, p, need); });
  } else if (kind == "subm_conv3d") {
    const ops::SubmConv3dParams p = subm_conv3d_params(kernel_size, dilation);
    g = without_gil([&] { return ops::subm_conv3d_backward(x, w, dy, p, need); });
  } else if (kind == "conv_transpose3d") {
    ops::ConvTranspose3dParams p = conv_transpose3d_params(kernel_size, stride, padding, dilation, none);
    p.coordinates = coords;
    g = without_gil([&] { return ops::conv_transpose3d_backward(x, w, dy, p, need); });
  } else if (kind == "generative_conv_transpose3d") {
    ops::GenerativeConvTranspose3dParams p = generative_conv_transpose3d_params(kernel_size, stride, none);
    p.coordinates = coords;
    g = without_gil([&] { return ops::generative_conv_transpose3d_backward(x, w, dy, p, need); });
  } else if (kind == "linear") {
    g = without_gil([&] { return ops::linear_backward(x, w, dy, need); });
  } else {
    fail(op, "kind", "unknown convolution '", kind, "'");
  }
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(maybe(g.input, fw), maybe(g.weight, fw), maybe(g.bias, fw));
}

nb::object activation_backward(const SparseTensor& x, const SparseTensor& dy, const std::string& kind,
                               double negative_slope, int framework) {
  const ops::ActivationParams p{activation_kind(kind, "activation_backward"), negative_slope};
  return active(without_gil([&] { return ops::activation_backward(x, dy, p); }), static_cast<Framework>(framework));
}

ops::DropoutParams dropout_params(double p, std::int64_t seed, bool training) {
  ops::DropoutParams params;
  params.p = p;
  params.seed = static_cast<std::uint64_t>(seed);
  params.training = training;
  return params;
}

SparseTensor dropout(const SparseTensor& x, double p, std::int64_t seed, bool training) {
  const ops::DropoutParams params = dropout_params(p, seed, training);
  return without_gil([&] { return ops::dropout(x, params); });
}

nb::object dropout_backward(const SparseTensor& dy, double p, std::int64_t seed, bool training, int framework) {
  const ops::DropoutParams params = dropout_params(p, seed, training);
  return active(without_gil([&] { return ops::dropout_backward(dy, params); }), static_cast<Framework>(framework));
}

ops::BatchNormArgs bn_args(const InArray& running_mean, const InArray& running_var,
                           const std::optional<InArray>& weight, const std::optional<InArray>& bias, bool training,
                           double momentum, double eps, const char* op) {
  ops::BatchNormArgs args;
  args.running_mean = import_array(running_mean, op, "running_mean");
  args.running_var = import_array(running_var, op, "running_var");
  args.weight = import_optional(weight, op, "weight");
  args.bias = import_optional(bias, op, "bias");
  args.training = training;
  args.momentum = momentum;
  args.eps = eps;
  return args;
}

// (output, new running mean, new running var, saved stats or None).
nb::tuple batch_norm_forward(const SparseTensor& x, const InArray& running_mean, const InArray& running_var,
                             const std::optional<InArray>& weight, const std::optional<InArray>& bias, bool training,
                             double momentum, double eps, int framework) {
  const ops::BatchNormArgs args =
      bn_args(running_mean, running_var, weight, bias, training, momentum, eps, "batch_norm");
  ops::BatchNormResult r = without_gil([&] { return ops::batch_norm(x, args); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(r.output, fw), export_array(r.running_mean, fw), export_array(r.running_var, fw),
                        r.saved_stats.defined() ? export_array(r.saved_stats, fw) : nb::none());
}

nb::tuple batch_norm_backward(const SparseTensor& x, const SparseTensor& dy, const InArray& running_mean,
                              const InArray& running_var, const std::optional<InArray>& weight,
                              const std::optional<InArray>& bias, bool training, double eps,
                              const std::optional<InArray>& saved_stats, int framework) {
  const char* op = "batch_norm_backward";
  ops::BatchNormArgs args = bn_args(running_mean, running_var, weight, bias, training, 0.1, eps, op);
  args.saved_stats = import_optional(saved_stats, op, "saved_stats");
  ops::NormGrads g = without_gil([&] { return ops::batch_norm_backward(x, dy, args); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(g.input, fw), maybe(g.weight, fw), maybe(g.bias, fw));
}

nb::tuple layer_norm_backward(const SparseTensor& x, const SparseTensor& dy, const std::optional<InArray>& weight,
                              const std::optional<InArray>& bias, double eps, int framework) {
  ops::LayerNormArgs args;
  args.weight = import_optional(weight, "layer_norm_backward", "weight");
  args.bias = import_optional(bias, "layer_norm_backward", "bias");
  args.eps = eps;
  ops::NormGrads g = without_gil([&] { return ops::layer_norm_backward(x, dy, args); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(g.input, fw), maybe(g.weight, fw), maybe(g.bias, fw));
}

nb::tuple rms_norm_backward(const SparseTensor& x, const SparseTensor& dy, const std::optional<InArray>& weight,
                            double eps, int framework) {
  ops::RmsNormArgs args;
  args.weight = import_optional(weight, "rms_norm_backward", "weight");
  args.eps = eps;
  ops::NormGrads g = without_gil([&] { return ops::rms_norm_backward(x, dy, args); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(g.input, fw), maybe(g.weight, fw));
}

nb::tuple add_backward(const SparseTensor& a, const SparseTensor& b, const SparseTensor& dy, int framework) {
  ops::BinaryGrads g = without_gil([&] { return ops::sparse_binary_backward(ops::BinaryOp::add, a, b, dy); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(g.lhs, fw), active(g.rhs, fw));
}

nb::tuple cat_backward(const SparseTensor& a, const SparseTensor& b, const SparseTensor& dy, int framework) {
  auto [ga, gb] = without_gil([&] { return ops::cat_backward(a, b, dy); });
  const auto fw = static_cast<Framework>(framework);
  return nb::make_tuple(active(ga, fw), active(gb, fw));
}

nb::object pool3d_backward(const SparseTensor& x, const SparseTensor& dy, const std::string& mode, I3 kernel_size,
                           I3 stride, I3 padding, I3 dilation, int framework) {
  const ops::Pool3dParams p = pool3d_params(kernel_size, stride, padding, dilation);
  const ops::PoolMode m = pool_mode(mode, "pool3d_backward");
  return active(without_gil([&] { return ops::pool3d_backward(x, dy, m, p); }), static_cast<Framework>(framework));
}

nb::object global_pool_backward(const SparseTensor& x, const InArray& dy, const std::string& mode, int framework) {
  const Array g = import_array(dy, "global_pool_backward", "dy");
  const ops::PoolMode m = pool_mode(mode, "global_pool_backward");
  return active(without_gil([&] { return ops::global_pool_backward(x, g, m); }), static_cast<Framework>(framework));
}

nb::object devoxelize_backward(const SparseTensor& x, const InArray& points, const InArray& dy, D3 voxel_size,
                               D3 origin, const std::string& interpolation,
                               const std::optional<InArray>& point_voxel_map,
                               const std::optional<InArray>& batch_indices, int framework) {
  const char* op = "devoxelize_backward";
  const ops::DevoxelizeParams p = devoxelize_params(voxel_size, origin, interpolation, op);
  const Array pts = import_array(points, op, "points");
  const Array g = import_array(dy, op, "dy");
  const std::optional<Array> map = import_optional(point_voxel_map, op, "point_voxel_map");
  const std::optional<Array> batch = import_optional(batch_indices, op, "batch_indices");
  return active(without_gil([&] { return ops::devoxelize_backward(x, pts, g, p, map, batch); }),
                static_cast<Framework>(framework));
}

}  // namespace

void bind_ops_grad(nb::module_& m) {
  m.def("conv_backward", &conv_backward, nb::arg("kind"), nb::arg("x"), nb::arg("weight"), nb::arg("dy"),
        nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("target").none(),
        nb::arg("need_input"), nb::arg("need_weight"), nb::arg("need_bias"), nb::arg("framework"));
  m.def("activation_backward", &activation_backward, nb::arg("x"), nb::arg("dy"), nb::arg("kind"),
        nb::arg("negative_slope"), nb::arg("framework"));
  m.def("dropout", &dropout, nb::arg("x"), nb::arg("p"), nb::arg("seed"), nb::arg("training"));
  m.def("dropout_backward", &dropout_backward, nb::arg("dy"), nb::arg("p"), nb::arg("seed"), nb::arg("training"),
        nb::arg("framework"));
  m.def("batch_norm_forward", &batch_norm_forward, nb::arg("x"), nb::arg("running_mean"), nb::arg("running_var"),
        nb::arg("weight").none(), nb::arg("bias").none(), nb::arg("training"), nb::arg("momentum"), nb::arg("eps"),
        nb::arg("framework"));
  m.def("batch_norm_backward", &batch_norm_backward, nb::arg("x"), nb::arg("dy"), nb::arg("running_mean"),
        nb::arg("running_var"), nb::arg("weight").none(), nb::arg("bias").none(), nb::arg("training"), nb::arg("eps"),
        nb::arg("saved_stats").none(), nb::arg("framework"));
  m.def("layer_norm_backward", &layer_norm_backward, nb::arg("x"), nb::arg("dy"), nb::arg("weight").none(),
        nb::arg("bias").none(), nb::arg("eps"), nb::arg("framework"));
  m.def("rms_norm_backward", &rms_norm_backward, nb::arg("x"), nb::arg("dy"), nb::arg("weight").none(), nb::arg("eps"),
        nb::arg("framework"));
  m.def("add_backward", &add_backward, nb::arg("a"), nb::arg("b"), nb::arg("dy"), nb::arg("framework"));
  m.def("cat_backward", &cat_backward, nb::arg("a"), nb::arg("b"), nb::arg("dy"), nb::arg("framework"));
  m.def("pool3d_backward", &pool3d_backward, nb::arg("x"), nb::arg("dy"), nb::arg("mode"), nb::arg("kernel_size"),
        nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("framework"));
  m.def("global_pool_backward", &global_pool_backward, nb::arg("x"), nb::arg("dy"), nb::arg("mode"),
        nb::arg("framework"));
  m.def("devoxelize_backward", &devoxelize_backward, nb::arg("x"), nb::arg("points"), nb::arg("dy"),
        nb::arg("voxel_size"), nb::arg("origin"), nb::arg("interpolation"), nb::arg("point_voxel_map").none(),
        nb::arg("batch_indices").none(), nb::arg("framework"));
}

}  // namespace lattice::python
