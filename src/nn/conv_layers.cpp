// Convolution layers: parameter creation (kernel-major weights, PyTorch-style
// initialisation) and forward through the differentiable convolutions.
#include <cmath>

#include "lattice/core/error.hpp"
#include "lattice/nn/layers.hpp"

namespace lattice::nn {

namespace {

std::int64_t volume(Int3 k) { return static_cast<std::int64_t>(k.x) * k.y * k.z; }

}  // namespace

ConvBase::ConvBase(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options, Int3 default_kernel,
                   Int3 default_stride, const char* type)
    : options_(options),
      kernel_size_(options.kernel_size.value_or(default_kernel)),
      stride_(options.stride.value_or(default_stride)),
      in_channels_(in_channels),
      out_channels_(out_channels) {
  check(in_channels > 0, type, "in_channels", "must be positive, got ", in_channels);
  check(out_channels > 0, type, "out_channels", "must be positive, got ", out_channels);
  check(kernel_size_.x > 0 && kernel_size_.y > 0 && kernel_size_.z > 0, type, "kernel_size",
        "must be positive on every axis, got (", kernel_size_.x, ", ", kernel_size_.y, ", ", kernel_size_.z, ")");
  const std::int64_t k = volume(kernel_size_);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * k));
  const ParamOptions& p = options.param;
  weight_ = register_parameter(
      "weight", make_parameter(uniform_init(Shape{k, in_channels, out_channels}, bound, p.seed, p.dtype, p.device)));
  if (options.bias) {
    bias_ = register_parameter("bias",
                               make_parameter(uniform_init(Shape{out_channels}, bound, p.seed + 1, p.dtype, p.device)));
  }
}

// ---- plain forms -----------------------------------------------------------------

Conv3d::Conv3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{3}, Int3{1}, "nn.Conv3d") {}

autograd::Variable Conv3d::forward(const autograd::Variable& x) { return forward(x, ops::TargetCoords{}); }

autograd::Variable Conv3d::forward(const autograd::Variable& x, const ops::TargetCoords& coordinates) {
  ops::Conv3dParams p;
  p.kernel_size = kernel_size_;
  p.stride = stride_;
  p.padding = options_.padding;
  p.dilation = options_.dilation;
  p.coordinates = coordinates;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  return autograd::conv3d(x, leaf(weight_), leaf(bias_), p);
}

SubmConv3d::SubmConv3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{3}, Int3{1}, "nn.SubmConv3d") {}

autograd::Variable SubmConv3d::forward(const autograd::Variable& x) {
  ops::SubmConv3dParams p;
  p.kernel_size = kernel_size_;
  p.dilation = options_.dilation;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  return autograd::subm_conv3d(x, leaf(weight_), leaf(bias_), p);
}

ConvTranspose3d::ConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{2}, Int3{2}, "nn.ConvTranspose3d") {}

autograd::Variable ConvTranspose3d::forward(const autograd::Variable& x) { return forward(x, ops::TargetCoords{}); }

autograd::Variable ConvTranspose3d::forward(const autograd::Variable& x, const ops::TargetCoords& coordinates) {
  ops::ConvTranspose3dParams p;
  p.kernel_size = kernel_size_;
  p.stride = stride_;
  p.padding = options_.padding;
  p.dilation = options_.dilation;
  p.coordinates = coordinates;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  return autograd::conv_transpose3d(x, leaf(weight_), leaf(bias_), p);
}

GenerativeConvTranspose3d::GenerativeConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels,
                                                     const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{2}, Int3{2}, "nn.GenerativeConvTranspose3d") {}

autograd::Variable GenerativeConvTranspose3d::forward(const autograd::Variable& x) {
  return forward(x, ops::TargetCoords{});
}

autograd::Variable GenerativeConvTranspose3d::forward(const autograd::Variable& x,
                                                      const ops::TargetCoords& coordinates) {
  ops::GenerativeConvTranspose3dParams p;
  p.kernel_size = kernel_size_;
  p.stride = stride_;
  p.coordinates = coordinates;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  return autograd::generative_conv_transpose3d(x, leaf(weight_), leaf(bias_), p);
}

// ---- normalized forms ------------------------------------------------------------

NormalizedSubmConv3d::NormalizedSubmConv3d(std::int64_t in_channels, std::int64_t out_channels,
                                           const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{3}, Int3{1}, "nn.NormalizedSubmConv3d") {}

autograd::Variable NormalizedSubmConv3d::forward(const autograd::Variable& x) {
  ops::NormalizedSubmConv3dParams p;
  p.kernel_size = kernel_size_;
  p.dilation = options_.dilation;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  p.eps = options_.eps;
  return autograd::normalized_subm_conv3d(x, leaf(weight_), leaf(bias_), p);
}

NormalizedConvTranspose3d::NormalizedConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels,
                                                     const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{2}, Int3{2}, "nn.NormalizedConvTranspose3d") {}

autograd::Variable NormalizedConvTranspose3d::forward(const autograd::Variable& x) {
  return forward(x, ops::TargetCoords{});
}

autograd::Variable NormalizedConvTranspose3d::forward(const autograd::Variable& x,
                                                      const ops::TargetCoords& coordinates) {
  ops::NormalizedConvTranspose3dParams p;
  p.kernel_size = kernel_size_;
  p.stride = stride_;
  p.padding = options_.padding;
  p.dilation = options_.dilation;
  p.coordinates = coordinates;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  p.eps = options_.eps;
  return autograd::normalized_conv_transpose3d(x, leaf(weight_), leaf(bias_), p);
}

NormalizedGenerativeConvTranspose3d::NormalizedGenerativeConvTranspose3d(std::int64_t in_channels,
                                                                         std::int64_t out_channels,
                                                                         const ConvOptions& options)
    : ConvBase(in_channels, out_channels, options, Int3{2}, Int3{2}, "nn.NormalizedGenerativeConvTranspose3d") {}

autograd::Variable NormalizedGenerativeConvTranspose3d::forward(const autograd::Variable& x) {
  return forward(x, ops::TargetCoords{});
}

autograd::Variable NormalizedGenerativeConvTranspose3d::forward(const autograd::Variable& x,
                                                                const ops::TargetCoords& coordinates) {
  ops::NormalizedGenerativeConvTranspose3dParams p;
  p.kernel_size = kernel_size_;
  p.stride = stride_;
  p.coordinates = coordinates;
  p.route = options_.route;
  p.allow_tf32 = options_.allow_tf32;
  p.eps = options_.eps;
  return autograd::normalized_generative_conv_transpose3d(x, leaf(weight_), leaf(bias_), p);
}

}  // namespace lattice::nn
