// Linear, activation, dropout, norm, pooling and resampling layers.
#include "lattice/nn/layers.hpp"

#include <cmath>

#include "lattice/core/error.hpp"

namespace lattice::nn {

namespace {

Parameter filled(std::int64_t c, double value, const ParamOptions& p) {
  return make_parameter(Array::full(Shape{c}, p.dtype, value, p.device));
}

}  // namespace

Linear::Linear(std::int64_t in_features, std::int64_t out_features, bool bias, const ParamOptions& param) {
  check(in_features > 0, "nn.Linear", "in_features", "must be positive, got ", in_features);
  check(out_features > 0, "nn.Linear", "out_features", "must be positive, got ", out_features);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = register_parameter("weight", make_parameter(uniform_init(Shape{out_features, in_features}, bound,
                                                                     param.seed, param.dtype, param.device)));
  if (bias) {
    bias_ = register_parameter(
        "bias", make_parameter(uniform_init(Shape{out_features}, bound, param.seed + 1, param.dtype, param.device)));
  }
}

autograd::Variable Linear::forward(const autograd::Variable& x) {
  return autograd::linear(x, leaf(weight_), leaf(bias_));
}

autograd::Variable Activation::forward(const autograd::Variable& x) { return autograd::activation(x, params_); }

Dropout::Dropout(double p, std::uint64_t seed) : p_(p), seed_(seed) {
  check(std::isfinite(p) && p >= 0.0 && p < 1.0, "nn.Dropout", "p", "must lie in [0, 1), got ", p);
}

autograd::Variable Dropout::forward(const autograd::Variable& x) {
  if (!training() || p_ == 0.0) return x;
  const ops::DropoutParams params{p_, seed_ + calls_, true};
  autograd::Variable y = autograd::dropout(x, params);
  ++calls_;  // only after a successful call: a failed one changes no state
  return y;
}

BatchNorm::BatchNorm(std::int64_t channels, double eps, double momentum, bool affine, const ParamOptions& param)
    : eps_(eps), momentum_(momentum) {
  check(channels > 0, "nn.BatchNorm", "channels", "must be positive, got ", channels);
  check(std::isfinite(eps) && eps >= 0.0, "nn.BatchNorm", "eps", "must be finite and >= 0, got ", eps);
  check(std::isfinite(momentum) && momentum >= 0.0 && momentum <= 1.0, "nn.BatchNorm", "momentum",
        "must lie in [0, 1], got ", momentum);
  if (affine) {
    weight_ = register_parameter("weight", filled(channels, 1.0, param));
    bias_ = register_parameter("bias", filled(channels, 0.0, param));
  }
  register_buffer("running_mean", Array::zeros(Shape{channels}, DType::f32, param.device));
  register_buffer("running_var", Array::full(Shape{channels}, DType::f32, 1.0, param.device));
}

autograd::Variable BatchNorm::forward(const autograd::Variable& x) {
  ops::BatchNormArgs args;
  args.running_mean = buffer("running_mean");
  args.running_var = buffer("running_var");
  args.training = training();
  args.momentum = momentum_;
  args.eps = eps_;
  autograd::BatchNormOutput out = autograd::batch_norm(x, leaf(weight_), leaf(bias_), args);
  if (training()) {
    set_buffer("running_mean", std::move(out.running_mean));
    set_buffer("running_var", std::move(out.running_var));
  }
  return std::move(out.output);
}

LayerNorm::LayerNorm(std::int64_t channels, double eps, bool affine, const ParamOptions& param) : eps_(eps) {
  check(channels > 0, "nn.LayerNorm", "channels", "must be positive, got ", channels);
  if (affine) {
    weight_ = register_parameter("weight", filled(channels, 1.0, param));
    bias_ = register_parameter("bias", filled(channels, 0.0, param));
  }
}

autograd::Variable LayerNorm::forward(const autograd::Variable& x) {
  return autograd::layer_norm(x, leaf(weight_), leaf(bias_), eps_);
}

RMSNorm::RMSNorm(std::int64_t channels, double eps, bool affine, const ParamOptions& param) : eps_(eps) {
  check(channels > 0, "nn.RMSNorm", "channels", "must be positive, got ", channels);
  if (affine) weight_ = register_parameter("weight", filled(channels, 1.0, param));
}

autograd::Variable RMSNorm::forward(const autograd::Variable& x) { return autograd::rms_norm(x, leaf(weight_), eps_); }

autograd::Variable Pool3d::forward(const autograd::Variable& x) { return autograd::pool3d(x, mode_, params_); }

autograd::Variable PoolTranspose3d::forward(const autograd::Variable& x) {
  return autograd::pool_transpose3d(x, params_);
}

autograd::Variable TrilinearUpsample3d::forward(const autograd::Variable& x) {
  return autograd::trilinear_upsample3d(x, params_);
}

autograd::Variable GlobalPool::forward(const autograd::Variable& x) {
  return autograd::global_pool(x, mode_, batch_size_);
}

}  // namespace lattice::nn
