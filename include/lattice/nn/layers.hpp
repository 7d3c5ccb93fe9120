// Layers (issue 5): convolutions, linear, activations, dropout, norms,
// pooling and resampling as Modules over autograd Variables.
//
// Parameter names and shapes (the state_dict / safetensors keys):
//   convolutions (every kind)  weight (K, C_in, C_out) kernel-major, K = kx*ky*kz
//                              bias   (C_out,)            when bias = true
//   Linear                     weight (C_out, C_in), bias (C_out,)
//   BatchNorm                  weight (C,), bias (C,)     when affine
//                              buffers running_mean (C,), running_var (C,) float32
//   LayerNorm                  weight (C,), bias (C,)     when affine
//   RMSNorm                    weight (C,)                when affine
// Weights and biases are initialised like PyTorch: uniform(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) with fan_in = C_in * K (kaiming_uniform with a = sqrt(5)
// gives that bound), generated on the CPU from `seed` (bias from seed + 1),
// then converted to dtype and moved to device. Norm weights start at 1,
// biases at 0.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/core/kernel_spec.hpp"
#include "lattice/nn/module.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/resample.hpp"

namespace lattice::nn {

// Where parameters are created.
struct ParamOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  std::uint64_t seed = 0;  // initialisation seed: give each layer its own
};

// Options shared by the convolution layers. Unset kernel_size / stride take
// the op's default (3 / 1 for Conv3d and SubmConv3d, 2 / 2 for the transposed
// and generative forms).
struct ConvOptions {
  std::optional<Int3> kernel_size;
  std::optional<Int3> stride;
  Int3 padding{0};
  Int3 dilation{1};
  bool bias = true;
  ops::ConvRoute route = ops::ConvRoute::automatic;
  bool allow_tf32 = false;
  double eps = 1e-8;  // normalized forms only
  ParamOptions param{};
};

// Common state of the convolution layers.
class ConvBase : public Module {
 public:
  const Parameter& weight() const { return weight_; }
  const Parameter& bias() const { return bias_; }  // null without bias
  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  Int3 kernel_size() const { return kernel_size_; }

 protected:
  ConvBase(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options, Int3 default_kernel,
           Int3 default_stride, const char* type);
  ConvOptions options_;
  Int3 kernel_size_;
  Int3 stride_;
  std::int64_t in_channels_;
  std::int64_t out_channels_;
  Parameter weight_;
  Parameter bias_;
};

class Conv3d : public ConvBase {
 public:
  Conv3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  // Onto an explicit output support (the target relation).
  autograd::Variable forward(const autograd::Variable& x, const ops::TargetCoords& coordinates);
  std::string type_name() const override { return "Conv3d"; }
};

class SubmConv3d : public ConvBase {
 public:
  SubmConv3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "SubmConv3d"; }
};

class ConvTranspose3d : public ConvBase {
 public:
  ConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  autograd::Variable forward(const autograd::Variable& x, const ops::TargetCoords& coordinates);
  std::string type_name() const override { return "ConvTranspose3d"; }
};

class GenerativeConvTranspose3d : public ConvBase {
 public:
  GenerativeConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  autograd::Variable forward(const autograd::Variable& x, const ops::TargetCoords& coordinates);
  std::string type_name() const override { return "GenerativeConvTranspose3d"; }
};

class NormalizedSubmConv3d : public ConvBase {
 public:
  NormalizedSubmConv3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "NormalizedSubmConv3d"; }
};

class NormalizedConvTranspose3d : public ConvBase {
 public:
  NormalizedConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels, const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  autograd::Variable forward(const autograd::Variable& x, const ops::TargetCoords& coordinates);
  std::string type_name() const override { return "NormalizedConvTranspose3d"; }
};

class NormalizedGenerativeConvTranspose3d : public ConvBase {
 public:
  NormalizedGenerativeConvTranspose3d(std::int64_t in_channels, std::int64_t out_channels,
                                      const ConvOptions& options = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  autograd::Variable forward(const autograd::Variable& x, const ops::TargetCoords& coordinates);
  std::string type_name() const override { return "NormalizedGenerativeConvTranspose3d"; }
};

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true, const ParamOptions& param = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "Linear"; }
  const Parameter& weight() const { return weight_; }
  const Parameter& bias() const { return bias_; }

 private:
  Parameter weight_;
  Parameter bias_;
};

// ---- activations ---------------------------------------------------------------

class Activation : public Module {
 public:
  explicit Activation(ops::ActivationParams params) : params_(params) {}
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "Activation"; }

 protected:
  ops::ActivationParams params_;
};

class ReLU : public Activation {
 public:
  ReLU() : Activation({ops::ActivationKind::relu}) {}
  std::string type_name() const override { return "ReLU"; }
};
class LeakyReLU : public Activation {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Activation({ops::ActivationKind::leaky_relu, negative_slope}) {}
  std::string type_name() const override { return "LeakyReLU"; }
};
class GELU : public Activation {
 public:
  explicit GELU(bool approximate = false)
      : Activation({approximate ? ops::ActivationKind::gelu_tanh : ops::ActivationKind::gelu}) {}
  std::string type_name() const override { return "GELU"; }
};
class SiLU : public Activation {
 public:
  SiLU() : Activation({ops::ActivationKind::silu}) {}
  std::string type_name() const override { return "SiLU"; }
};
class Sigmoid : public Activation {
 public:
  Sigmoid() : Activation({ops::ActivationKind::sigmoid}) {}
  std::string type_name() const override { return "Sigmoid"; }
};
class Tanh : public Activation {
 public:
  Tanh() : Activation({ops::ActivationKind::tanh}) {}
  std::string type_name() const override { return "Tanh"; }
};
class Softplus : public Activation {
 public:
  Softplus() : Activation({ops::ActivationKind::softplus}) {}
  std::string type_name() const override { return "Softplus"; }
};

// Inverted dropout in training mode, identity in eval mode. Call n (counting
// from 0) uses the mask of seed + n: deterministic, and a new mask each step.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0);
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::uint64_t calls() const { return calls_; }

 private:
  double p_;
  std::uint64_t seed_;
  std::uint64_t calls_ = 0;
};

// ---- norms ---------------------------------------------------------------------

// Batch norm over the active rows. Training: batch statistics, and the
// running statistics (buffers) updated with momentum; eval: the running ones.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(std::int64_t channels, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                     const ParamOptions& param = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "BatchNorm"; }
  const Array& running_mean() const { return buffer("running_mean"); }
  const Array& running_var() const { return buffer("running_var"); }
  const Parameter& weight() const { return weight_; }
  const Parameter& bias() const { return bias_; }

 private:
  double eps_;
  double momentum_;
  Parameter weight_;
  Parameter bias_;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::int64_t channels, double eps = 1e-5, bool affine = true, const ParamOptions& param = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "LayerNorm"; }

 private:
  double eps_;
  Parameter weight_;
  Parameter bias_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(std::int64_t channels, double eps = 1e-5, bool affine = true, const ParamOptions& param = {});
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "RMSNorm"; }

 private:
  double eps_;
  Parameter weight_;
};

// ---- pooling and resampling ----------------------------------------------------

class Pool3d : public Module {
 public:
  explicit Pool3d(ops::PoolMode mode, const ops::Pool3dParams& params = {}) : mode_(mode), params_(params) {}
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "Pool3d"; }

 private:
  ops::PoolMode mode_;
  ops::Pool3dParams params_;
};
class MaxPool3d : public Pool3d {
 public:
  explicit MaxPool3d(const ops::Pool3dParams& params = {}) : Pool3d(ops::PoolMode::max, params) {}
  std::string type_name() const override { return "MaxPool3d"; }
};
class AvgPool3d : public Pool3d {
 public:
  explicit AvgPool3d(const ops::Pool3dParams& params = {}) : Pool3d(ops::PoolMode::avg, params) {}
  std::string type_name() const override { return "AvgPool3d"; }
};
class SumPool3d : public Pool3d {
 public:
  explicit SumPool3d(const ops::Pool3dParams& params = {}) : Pool3d(ops::PoolMode::sum, params) {}
  std::string type_name() const override { return "SumPool3d"; }
};

class PoolTranspose3d : public Module {
 public:
  explicit PoolTranspose3d(const ops::PoolTranspose3dParams& params = {}) : params_(params) {}
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "PoolTranspose3d"; }

 private:
  ops::PoolTranspose3dParams params_;
};

class TrilinearUpsample3d : public Module {
 public:
  explicit TrilinearUpsample3d(const ops::TrilinearUpsample3dParams& params = {}) : params_(params) {}
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "TrilinearUpsample3d"; }

 private:
  ops::TrilinearUpsample3dParams params_;
};

// Returns a dense (B, C) Variable.
class GlobalPool : public Module {
 public:
  explicit GlobalPool(ops::PoolMode mode = ops::PoolMode::avg, std::optional<std::int64_t> batch_size = std::nullopt)
      : mode_(mode), batch_size_(batch_size) {}
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "GlobalPool"; }

 private:
  ops::PoolMode mode_;
  std::optional<std::int64_t> batch_size_;
};

}  // namespace lattice::nn
