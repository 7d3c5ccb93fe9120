// Optimizers over lattice::nn::Parameter: SGD and AdamW with PyTorch's update
// rules (torch.optim.SGD / torch.optim.AdamW, single parameter group, no
// amsgrad/maximize/foreach). step() writes `value` in place -- the one
// documented place lattice mutates an existing array -- from `grad`, skipping
// parameters whose grad is absent or that do not require grad.
//
// Dtypes: float64 parameters keep float64 state; float32, float16 and
// bfloat16 parameters keep float32 state and compute in float32, rounding the
// new value once to the storage type. Without a float32 master copy an update
// smaller than half an ulp of a 16-bit value is lost, as in plain PyTorch
// half training; AdamWOptions::master_weights keeps one per 16-bit parameter
// (mixed-precision training: the float32 copy is updated and rounded into the
// parameter after every step). Updates are elementwise and deterministic on both backends;
// the CUDA path enqueues kernels on the parameter's device and never waits.
//
// State dictionaries (name -> Array, for save_safetensors):
//   "state.<i>.momentum_buffer"            SGD with momentum
//   "state.<i>.exp_avg", ".exp_avg_sq"     AdamW
//   "state.<i>.step"                       AdamW, int64 scalar on the CPU
//   "state.<i>.master"                     AdamW with master_weights, 16-bit parameters (float32)
// where i is the parameter's position in the list given to the constructor.
// state_dict() returns copies on the CPU, by parameter index; load_state_dict()
// validates every entry (known and unique name, index, shape, dtype, step >= 0,
// all AdamW fields of a parameter present) before changing anything
// and copies onto each parameter's device. Hyperparameters are not part of
// the state (construct the optimizer with the same options).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/nn/parameter.hpp"

namespace lattice::nn {

// Same type as nn::Module's state dictionary (module.hpp): ordered name -> Array.
using StateDict = std::vector<std::pair<std::string, Array>>;

class Optimizer {
 public:
  explicit Optimizer(std::vector<Parameter> params, const char* op);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // Drops every parameter's grad (PyTorch's set_to_none=True).
  void zero_grad();
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateDict& state) = 0;

  const std::vector<Parameter>& params() const { return params_; }
  double lr() const { return lr_; }
  // Learning-rate schedules change this between steps (checked >= 0).
  void set_lr(double lr);

 protected:
  std::vector<Parameter> params_;
  double lr_ = 0.0;
  const char* op_;
};

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

// g = grad + weight_decay * p; with momentum: buf = g on the first step, else
// buf = momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf
// : buf; p -= lr * g.
class SGD final : public Optimizer {
 public:
  explicit SGD(std::vector<Parameter> params, const SGDOptions& options = {});
  void step() override;
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  std::vector<std::optional<Array>> momentum_;  // per parameter, created on its first step
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  // Keep a float32 master copy of every float16 / bfloat16 parameter: the
  // update runs on the copy and the parameter receives its rounding, so
  // updates smaller than a 16-bit ulp accumulate instead of vanishing.
  bool master_weights = false;
};

// t += 1; p *= 1 - lr * weight_decay; m = beta1 * m + (1 - beta1) * g;
// v = beta2 * v + (1 - beta2) * g * g; p -= (lr / (1 - beta1^t)) * m /
// (sqrt(v) / sqrt(1 - beta2^t) + eps). State starts at zero, t at 0.
class AdamW final : public Optimizer {
 public:
  explicit AdamW(std::vector<Parameter> params, const AdamWOptions& options = {});
  void step() override;
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;
  const AdamWOptions& options() const { return options_; }

 private:
  struct Slot {
    Array exp_avg;
    Array exp_avg_sq;
    std::int64_t step = 0;
    std::optional<Array> master;  // float32 copy of a 16-bit parameter (master_weights)
  };
  AdamWOptions options_;
  std::vector<std::optional<Slot>> state_;
};

}  // namespace lattice::nn

// One elementwise update as the backends receive it (provisional, internal).
namespace lattice::detail {

// One elementwise update as the backends receive it: hyperparameters already
// folded into the factors the kernels multiply by (computed in float64 on the
// host, converted to the compute type by the backend).
struct SgdUpdate {
  double lr;
  double momentum;  // 0: no buffer
  double one_minus_dampening;
  double weight_decay;
  bool nesterov;
  bool first;  // first step with this buffer: buf = g
};

struct AdamWUpdate {
  double decay;  // 1 - lr * weight_decay
  double beta1, one_minus_beta1;
  double beta2, one_minus_beta2;
  double step_size;   // lr / (1 - beta1^t)
  double sqrt_bias2;  // sqrt(1 - beta2^t)
  double eps;
};

}  // namespace lattice::detail
