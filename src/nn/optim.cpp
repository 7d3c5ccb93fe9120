// SGD and AdamW front ends: validation, per-parameter state and dispatch to
// the CPU or CUDA update kernels (backend/*/api_train.hpp). Every check of a
// step runs before the first parameter is written, so a bad grad leaves all
// parameters and all state untouched.
#include "lattice/nn/optim.hpp"

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>

#include "backend/cpu/api_train.hpp"
#include "backend/cuda/api_train.hpp"

namespace lattice::nn {

namespace {

// float32 state for 16-bit values (they compute in float32), else the value dtype.
DType state_dtype(DType value) { return value == DType::f64 ? DType::f64 : DType::f32; }

void check_hyper(bool ok, const char* op, const char* name, double v, const char* rule) {
  check(ok && std::isfinite(v), op, name, "must be ", rule, " (got ", v, ")");
}

// The parameters a step updates: requires_grad, grad present; grads checked first.
std::vector<std::size_t> params_to_update(const std::vector<Parameter>& params, const char* op) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const ParameterData& p = *params[i];
    if (!p.requires_grad || !p.grad.has_value()) continue;
    const Array& g = *p.grad;
    const std::string name = lattice::detail::concat("params[", i, "].grad");
    check(g.defined(), op, name, "is an undefined array");
    check<TypeError>(g.dtype() == p.value.dtype(), op, name, "has dtype ", dtype_name(g.dtype()),
                     " but the parameter is ", dtype_name(p.value.dtype()));
    check(g.shape() == p.value.shape(), op, name, "has shape ", g.shape().str(), " but the parameter has ",
          p.value.shape().str());
    check<DeviceError>(g.device() == p.value.device(), op, name, "is on ", g.device().str(),
                       " but the parameter is on ", p.value.device().str());
    out.push_back(i);
  }
  return out;
}

// "state.<i>.<field>" -> (i, field); false when the name does not have that form.
bool parse_state_name(const std::string& name, std::size_t& index, std::string& field) {
  if (name.rfind("state.", 0) != 0) return false;
  const std::size_t dot = name.find('.', 6);
  if (dot == std::string::npos || dot == 6 || dot - 6 > 9) return false;
  for (std::size_t k = 6; k < dot; ++k) {
    if (name[k] < '0' || name[k] > '9') return false;
  }
  index = static_cast<std::size_t>(std::stoull(name.substr(6, dot - 6)));
  field = name.substr(dot + 1);
  return true;
}

// A state array for parameter `value` loaded from `a`: shape and dtype checked, copied onto value's device.
Array load_state_array(const Array& a, const Array& value, const char* op, const std::string& name) {
  check(a.defined(), op, name, "is an undefined array");
  check<TypeError>(a.dtype() == state_dtype(value.dtype()), op, name, "has dtype ", dtype_name(a.dtype()),
                   ", expected ", dtype_name(state_dtype(value.dtype())));
  check(a.shape() == value.shape(), op, name, "has shape ", a.shape().str(), ", expected ", value.shape().str());
  Array copy = a.to(value.device());
  return copy.shares_buffer_with(a) ? copy.clone() : copy;
}

void check_unique_names(const StateDict& state, const char* op) {
  std::set<std::string> names;
  for (const auto& entry : state) {
    check(names.insert(entry.first).second, op, "state", "the entry '", entry.first, "' appears twice");
  }
}

std::string state_name(std::size_t i, const char* field) { return lattice::detail::concat("state.", i, ".", field); }

}  // namespace

Optimizer::Optimizer(std::vector<Parameter> params, const char* op) : params_(std::move(params)), op_(op) {
  std::set<const ParameterData*> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::string name = lattice::detail::concat("params[", i, "]");
    check(params_[i] != nullptr, op_, name, "is null");
    check(params_[i]->value.defined(), op_, name, "has an undefined value");
    check<TypeError>(is_floating(params_[i]->value.dtype()), op_, name, "has dtype ",
                     dtype_name(params_[i]->value.dtype()), "; only float parameters can be optimized");
    check(seen.insert(params_[i].get()).second, op_, name, "appears more than once in the parameter list");
  }
}

void Optimizer::zero_grad() {
  for (const Parameter& p : params_) p->grad.reset();
}

void Optimizer::set_lr(double lr) {
  check_hyper(lr >= 0.0, op_, "lr", lr, ">= 0");
  lr_ = lr;
}

// ---- SGD ---------------------------------------------------------------------------

SGD::SGD(std::vector<Parameter> params, const SGDOptions& options)
    : Optimizer(std::move(params), "SGD"), options_(options), momentum_(params_.size()) {
  check_hyper(options.lr >= 0.0, op_, "lr", options.lr, ">= 0");
  check_hyper(options.momentum >= 0.0, op_, "momentum", options.momentum, ">= 0");
  check_hyper(true, op_, "dampening", options.dampening, "finite");
  check_hyper(options.weight_decay >= 0.0, op_, "weight_decay", options.weight_decay, ">= 0");
  check(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0), op_, "nesterov",
        "requires momentum > 0 and dampening == 0 (got momentum ", options.momentum, ", dampening ", options.dampening,
        ")");
  lr_ = options.lr;
}

void SGD::step() {
  const std::vector<std::size_t> todo = params_to_update(params_, op_);
  for (std::size_t i : todo) {
    ParameterData& p = *params_[i];
    detail::SgdUpdate u{lr_,  options_.momentum, 1.0 - options_.dampening, options_.weight_decay, options_.nesterov,
                        false};
    Array buf;
    if (options_.momentum != 0.0) {
      if (!momentum_[i].has_value()) {
        momentum_[i] = Array::zeros(p.value.shape(), state_dtype(p.value.dtype()), p.value.device());
        u.first = true;
      }
      buf = *momentum_[i];
    }
    if (p.value.numel() == 0) continue;
    if (p.value.device().is_cuda()) {
      cuda::sgd_update(p.value, *p.grad, buf, u);
    } else {
      cpu::sgd_update(p.value, *p.grad, buf, u);
    }
  }
}

StateDict SGD::state_dict() const {
  StateDict out;
  for (std::size_t i = 0; i < momentum_.size(); ++i) {
    if (momentum_[i].has_value())
      out.emplace_back(state_name(i, "momentum_buffer"), momentum_[i]->to(Device::cpu()).clone());
  }
  return out;
}

void SGD::load_state_dict(const StateDict& state) {
  check_unique_names(state, op_);
  std::vector<std::optional<Array>> next(params_.size());
  for (const auto& [name, a] : state) {
    std::size_t i = 0;
    std::string field;
    check(parse_state_name(name, i, field) && field == "momentum_buffer", op_, "state", "unknown entry '", name,
          "' (SGD state holds state.<i>.momentum_buffer)");
    check(i < params_.size(), op_, "state", "entry '", name, "' names parameter ", i, " but there are ",
          params_.size());
    next[i] = load_state_array(a, params_[i]->value, op_, name);
  }
  momentum_ = std::move(next);
}

// ---- AdamW -------------------------------------------------------------------------

AdamW::AdamW(std::vector<Parameter> params, const AdamWOptions& options)
    : Optimizer(std::move(params), "AdamW"), options_(options), state_(params_.size()) {
  check_hyper(options.lr >= 0.0, op_, "lr", options.lr, ">= 0");
  check_hyper(options.beta1 >= 0.0 && options.beta1 < 1.0, op_, "beta1", options.beta1, "in [0, 1)");
  check_hyper(options.beta2 >= 0.0 && options.beta2 < 1.0, op_, "beta2", options.beta2, "in [0, 1)");
  check_hyper(options.eps >= 0.0, op_, "eps", options.eps, ">= 0");
  check_hyper(options.weight_decay >= 0.0, op_, "weight_decay", options.weight_decay, ">= 0");
  lr_ = options.lr;
}

void AdamW::step() {
  const std::vector<std::size_t> todo = params_to_update(params_, op_);
  for (std::size_t i : todo) {
    ParameterData& p = *params_[i];
    if (!state_[i].has_value()) {
      const DType sd = state_dtype(p.value.dtype());
      state_[i] = Slot{Array::zeros(p.value.shape(), sd, p.value.device()),
                       Array::zeros(p.value.shape(), sd, p.value.device()), 0, std::nullopt};
    }
    Slot& s = *state_[i];
    s.step += 1;
    const double t = static_cast<double>(s.step);
    const detail::AdamWUpdate u{1.0 - lr_ * options_.weight_decay,
                                options_.beta1,
                                1.0 - options_.beta1,
                                options_.beta2,
                                1.0 - options_.beta2,
                                lr_ / (1.0 - std::pow(options_.beta1, t)),
                                std::sqrt(1.0 - std::pow(options_.beta2, t)),
                                options_.eps};
    if (p.value.numel() == 0) continue;
    const bool master = options_.master_weights && (p.value.dtype() == DType::f16 || p.value.dtype() == DType::bf16);
    if (master && !s.master) s.master = p.value.astype(DType::f32);  // first step, or state loaded without one
    // With a master copy the float32 update runs on it (the gradient widened
    // exactly), then the parameter takes its rounding in place.
    const Array& target = master ? *s.master : p.value;
    const Array grad = master ? p.grad->astype(DType::f32) : *p.grad;
    if (p.value.device().is_cuda()) {
      cuda::adamw_update(target, grad, s.exp_avg, s.exp_avg_sq, u);
    } else {
      cpu::adamw_update(target, grad, s.exp_avg, s.exp_avg_sq, u);
    }
    if (master) {
      const Array rounded = s.master->astype(p.value.dtype());
      copy_bytes(p.value.raw(), p.value.device(), rounded.raw(), rounded.device(), rounded.nbytes());
    }
  }
}

StateDict AdamW::state_dict() const {
  StateDict out;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    if (!state_[i].has_value()) continue;
    out.emplace_back(state_name(i, "exp_avg"), state_[i]->exp_avg.to(Device::cpu()).clone());
    out.emplace_back(state_name(i, "exp_avg_sq"), state_[i]->exp_avg_sq.to(Device::cpu()).clone());
    out.emplace_back(state_name(i, "step"), Array::scalar<std::int64_t>(state_[i]->step, Device::cpu()));
    if (state_[i]->master) out.emplace_back(state_name(i, "master"), state_[i]->master->to(Device::cpu()).clone());
  }
  return out;
}

void AdamW::load_state_dict(const StateDict& state) {
  struct Partial {
    std::optional<Array> m, v, master;
    std::optional<std::int64_t> step;
  };
  check_unique_names(state, op_);
  std::vector<Partial> parts(params_.size());
  for (const auto& [name, a] : state) {
    std::size_t i = 0;
    std::string field;
    const bool known = parse_state_name(name, i, field) &&
                       (field == "exp_avg" || field == "exp_avg_sq" || field == "step" || field == "master");
    check(known, op_, "state", "unknown entry '", name,
          "' (AdamW state holds state.<i>.exp_avg, .exp_avg_sq, .step and, with master weights, .master)");
    check(i < params_.size(), op_, "state", "entry '", name, "' names parameter ", i, " but there are ",
          params_.size());
    if (field == "step") {
      check(a.defined() && a.numel() == 1 && (a.dtype() == DType::i64 || a.dtype() == DType::i32), op_, name,
            "must be a one-element int64 array (got ", a.defined() ? a.describe() : "undefined", ")");
      const std::int64_t step = a.item_int();
      check(step >= 0, op_, name, "must be >= 0 (got ", step, ")");
      parts[i].step = step;
    } else if (field == "master") {
      const DType pd = params_[i]->value.dtype();
      check(pd == DType::f16 || pd == DType::bf16, op_, name, "a master copy belongs to a 16-bit parameter; parameter ",
            i, " is ", dtype_name(pd));
      parts[i].master = load_state_array(a, params_[i]->value, op_, name);
    } else {
      (field == "exp_avg" ? parts[i].m : parts[i].v) = load_state_array(a, params_[i]->value, op_, name);
    }
  }
  std::vector<std::optional<Slot>> next(params_.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Partial& p = parts[i];
    const bool any = p.m || p.v || p.step || p.master;
    if (!any) continue;
    check(p.m && p.v && p.step, op_, "state", "parameter ", i,
          " needs all of exp_avg, exp_avg_sq and step (some are missing)");
    next[i] = Slot{*p.m, *p.v, *p.step, p.master};
  }
  state_ = std::move(next);
}

}  // namespace lattice::nn
