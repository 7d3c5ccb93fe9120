// Differentiable wrappers of the convolutions, pooling, resampling and
// devoxelisation: the forward op plus the VJPs of ops/conv_grad.hpp and
// ops/pooling_grad.hpp. Coordinates, relations, points and row maps are
// constants of the graph (SPEC §13).
#include <utility>

#include "autograd/args.hpp"
#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/pooling_grad.hpp"

namespace lattice::autograd {

namespace {

using detail::Grads;
using detail::sparse_arg;

using detail::optional_array;

bool has_epilogue(const ops::ConvEpilogue& e) { return e.scale || e.shift || e.residual || e.relu; }
template <class P>
bool has_epilogue(const P& p) {
  if constexpr (requires { p.epilogue; }) {
    return has_epilogue(p.epilogue);
  } else {
    return false;
  }
}

// One convolution wrapper for every kind: Forward(x, w, b, params) and
// Backward(x, w, dy, params, need) are the op pair.
template <class Params, class Forward, class Backward>
Variable conv_like(const char* op, const Variable& x, const Variable& weight, const Variable& bias,
                   const Params& params, Forward forward, Backward vjp) {
  const SparseTensor& xs = sparse_arg(x, op, "x");
  const std::optional<Array> w = optional_array(weight, op, "weight");
  check(w.has_value(), op, "weight", "undefined variable");
  const std::optional<Array> b = optional_array(bias, op, "bias");
  const ops::GradRequest need{x.requires_grad(), weight.requires_grad(), bias.requires_grad()};
  const bool records = grad_enabled() && (need.input || need.weight || need.bias);
  // A fused epilogue folds work the VJP cannot see; training runs unfused.
  check(!records || !has_epilogue(params), op, "params.epilogue",
        "a fused epilogue has no gradient; run the layers unfused when training");
  SparseTensor y = forward(xs, *w, b, params);
  return apply(op, Value{std::move(y)}, {x, weight, bias}, [xs, w = *w, params, need, vjp](const Value& dy) -> Grads {
    ops::ConvGrads g = vjp(xs, w, std::get<SparseTensor>(dy), params, need);
    Grads out(3);
    if (g.input) out[0] = Value{std::move(*g.input)};
    if (g.weight) out[1] = Value{std::move(*g.weight)};
    if (g.bias) out[2] = Value{std::move(*g.bias)};
    return out;
  });
}

}  // namespace

#define LATTICE_CONV_WRAPPER(NAME, PARAMS)                                                                    \
  Variable NAME(const Variable& x, const Variable& weight, const Variable& bias, const ops::PARAMS& params) { \
    return conv_like(                                                                                         \
        "autograd." #NAME, x, weight, bias, params,                                                           \
        [](const SparseTensor& xv, const Array& w, const std::optional<Array>& b, const ops::PARAMS& p) {     \
          return ops::NAME(xv, w, b, p);                                                                      \
        },                                                                                                    \
        [](const SparseTensor& xv, const Array& w, const SparseTensor& dy, const ops::PARAMS& p,              \
           const ops::GradRequest& need) { return ops::NAME##_backward(xv, w, dy, p, need); });               \
  }

LATTICE_CONV_WRAPPER(conv3d, Conv3dParams)
LATTICE_CONV_WRAPPER(subm_conv3d, SubmConv3dParams)
LATTICE_CONV_WRAPPER(conv_transpose3d, ConvTranspose3dParams)
LATTICE_CONV_WRAPPER(generative_conv_transpose3d, GenerativeConvTranspose3dParams)
LATTICE_CONV_WRAPPER(normalized_subm_conv3d, NormalizedSubmConv3dParams)
LATTICE_CONV_WRAPPER(normalized_conv_transpose3d, NormalizedConvTranspose3dParams)
LATTICE_CONV_WRAPPER(normalized_generative_conv_transpose3d, NormalizedGenerativeConvTranspose3dParams)

#undef LATTICE_CONV_WRAPPER

Variable pool3d(const Variable& x, ops::PoolMode mode, const ops::Pool3dParams& params) {
  constexpr const char* op = "autograd.pool3d";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  SparseTensor y = ops::pool3d(xs, mode, params);
  return apply(op, Value{std::move(y)}, {x}, [xs, mode, params](const Value& dy) -> Grads {
    return {Value{ops::pool3d_backward(xs, std::get<SparseTensor>(dy), mode, params)}};
  });
}

Variable global_pool(const Variable& x, ops::PoolMode mode, std::optional<std::int64_t> batch_size) {
  constexpr const char* op = "autograd.global_pool";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  Array y = ops::global_pool(xs, mode, batch_size);
  return apply(op, Value{std::move(y)}, {x}, [xs, mode](const Value& dy) -> Grads {
    return {Value{ops::global_pool_backward(xs, std::get<Array>(dy), mode)}};
  });
}

Variable pool_transpose3d(const Variable& x, const ops::PoolTranspose3dParams& params) {
  constexpr const char* op = "autograd.pool_transpose3d";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  SparseTensor y = ops::pool_transpose3d(xs, params);
  return apply(op, Value{std::move(y)}, {x}, [xs, params](const Value& dy) -> Grads {
    return {Value{ops::pool_transpose3d_backward(xs, std::get<SparseTensor>(dy), params)}};
  });
}

Variable trilinear_upsample3d(const Variable& x, const ops::TrilinearUpsample3dParams& params) {
  constexpr const char* op = "autograd.trilinear_upsample3d";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  SparseTensor y = ops::trilinear_upsample3d(xs, params);
  return apply(op, Value{std::move(y)}, {x}, [xs, params](const Value& dy) -> Grads {
    return {Value{ops::trilinear_upsample3d_backward(xs, std::get<SparseTensor>(dy), params)}};
  });
}

Variable devoxelize(const Variable& x, const Array& points, const ops::DevoxelizeParams& params,
                    const std::optional<Array>& point_voxel_map, const std::optional<Array>& batch_indices) {
  constexpr const char* op = "autograd.devoxelize";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  Array y = ops::devoxelize(xs, points, params, point_voxel_map, batch_indices);
  return apply(
      op, Value{std::move(y)}, {x}, [xs, points, params, point_voxel_map, batch_indices](const Value& dy) -> Grads {
        return {
            Value{ops::devoxelize_backward(xs, points, std::get<Array>(dy), params, point_voxel_map, batch_indices)}};
      });
}

}  // namespace lattice::autograd
