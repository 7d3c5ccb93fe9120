// Module base: registration, dotted names, state dictionaries, modes and
// device/dtype moves; Sequential; deterministic initialisation.
#include "lattice/nn/module.hpp"

#include <cmath>
#include <random>
#include <set>

#include "lattice/core/error.hpp"

namespace lattice::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

// ---- registration ----------------------------------------------------------------

void Module::check_new_name(const std::string& name) const {
  constexpr const char* op = "nn.Module.register";
  check(!name.empty() && name.find('.') == std::string::npos, op, "name", "must be non-empty and contain no '.', got '",
        name, "'");
  auto taken = [&](const auto& list) {
    for (const auto& [n, v] : list) {
      if (n == name) return true;
    }
    return false;
  };
  check(!taken(parameters_) && !taken(buffers_) && !taken(children_), op, "name", "'", name,
        "' is already registered in ", type_name());
}

Parameter Module::register_parameter(std::string name, Parameter parameter) {
  check_new_name(name);
  parameters_.emplace_back(std::move(name), parameter);
  return parameter;
}

void Module::register_buffer(std::string name, Array value) {
  check_new_name(name);
  check(value.defined(), "nn.Module.register_buffer", "value", "undefined array for '", name, "'");
  buffers_.emplace_back(std::move(name), std::move(value));
}

void Module::add_child(std::string name, std::shared_ptr<Module> module) {
  check(module != nullptr, "nn.Module.register_module", "module", "null module for '", name, "'");
  check_new_name(name);
  module->train(training_);
  children_.emplace_back(std::move(name), std::move(module));
}

const Array& Module::buffer(std::string_view name) const {
  for (const auto& [n, a] : buffers_) {
    if (n == name) return a;
  }
  fail("nn.Module.buffer", "name", "no buffer '", name, "' in ", type_name());
}

void Module::set_buffer(std::string_view name, Array value) {
  for (auto& [n, a] : buffers_) {
    if (n == name) {
      a = std::move(value);
      return;
    }
  }
  fail("nn.Module.set_buffer", "name", "no buffer '", name, "' in ", type_name());
}

autograd::Variable Module::leaf(const Parameter& parameter) {
  if (!parameter) return {};
  return autograd::Variable::from_parameter(parameter);
}

// ---- traversal -----------------------------------------------------------------

void Module::for_each_parameter(const std::string& prefix,
                                const std::function<void(const std::string&, const Parameter&)>& fn) const {
  for (const auto& [n, p] : parameters_) {
    if (p) fn(join(prefix, n), p);
  }
  for (const auto& [n, c] : children_) c->for_each_parameter(join(prefix, n), fn);
}

void Module::for_each_buffer(const std::string& prefix, const std::function<void(const std::string&, Array&)>& fn) {
  for (auto& [n, a] : buffers_) fn(join(prefix, n), a);
  for (auto& [n, c] : children_) c->for_each_buffer(join(prefix, n), fn);
}

std::vector<std::pair<std::string, Parameter>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Parameter>> out;
  for_each_parameter("", [&](const std::string& n, const Parameter& p) { out.emplace_back(n, p); });
  return out;
}

std::vector<Parameter> Module::parameters() const {
  std::vector<Parameter> out;
  for_each_parameter("", [&](const std::string&, const Parameter& p) { out.push_back(p); });
  return out;
}

std::vector<std::pair<std::string, Array>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Array>> out;
  const_cast<Module*>(this)->for_each_buffer("", [&](const std::string& n, Array& a) { out.emplace_back(n, a); });
  return out;
}

// ---- state dictionaries --------------------------------------------------------

StateDict Module::state_dict() const {
  StateDict out;
  // Per module: its parameters, its buffers, then each child (PyTorch's order).
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    for (const auto& [n, p] : m.parameters_) {
      if (p) out.emplace_back(join(prefix, n), p->value);
    }
    for (const auto& [n, a] : m.buffers_) out.emplace_back(join(prefix, n), a);
    for (const auto& [n, c] : m.children_) walk(*c, join(prefix, n));
  };
  walk(*this, "");
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  constexpr const char* op = "nn.Module.load_state_dict";
  std::set<std::string> given;
  for (const auto& [n, a] : state) {
    check(given.insert(n).second, op, "state", "key '", n, "' appears twice");
    check(a.defined(), op, "state", "entry '", n, "' is an undefined array");
  }
  auto find = [&](const std::string& name) -> const Array* {
    for (const auto& [n, a] : state) {
      if (n == name) return &a;
    }
    return nullptr;
  };
  auto check_entry = [&](const std::string& name, const Array& current) -> const Array* {
    const Array* a = find(name);
    if (!a) {
      check(!strict, op, "state", "missing key '", name, "' (", current.describe(), ")");
      return nullptr;
    }
    check(a->shape() == current.shape(), op, "state", "entry '", name, "' has shape ", a->shape().str(),
          ", the module expects ", current.shape().str());
    check<TypeError>(a->dtype() == current.dtype(), op, "state", "entry '", name, "' has dtype ",
                     dtype_name(a->dtype()), ", the module expects ", dtype_name(current.dtype()));
    return a;
  };

  // Pass 1: every check (nothing replaced yet).
  std::set<std::string> known;
  for (const auto& [n, p] : named_parameters()) {
    known.insert(n);
    check_entry(n, p->value);
  }
  for (const auto& [n, a] : named_buffers()) {
    known.insert(n);
    check_entry(n, a);
  }
  if (strict) {
    for (const auto& [n, a] : state) {
      check(known.count(n) != 0, op, "state", "unexpected key '", n, "' for ", type_name());
    }
  }
  // Pass 2: replace. Copies, so later in-place optimizer steps never write
  // into the caller's arrays.
  for (const auto& [n, p] : named_parameters()) {
    if (const Array* a = find(n)) {
      p->value = a->to(p->value.device()).clone();
      p->grad.reset();
    }
  }
  for_each_buffer("", [&](const std::string& n, Array& b) {
    if (const Array* a = find(n)) b = a->to(b.device()).clone();
  });
}

// ---- modes and moves -------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::to(Device device) {
  for_each_parameter("", [&](const std::string&, const Parameter& p) {
    p->value = p->value.to(device);
    if (p->grad) p->grad = p->grad->to(device);
  });
  for_each_buffer("", [&](const std::string&, Array& b) { b = b.to(device); });
}

void Module::to(DType dtype) {
  check<TypeError>(is_floating(dtype), "nn.Module.to", "dtype", "must be floating, got ", dtype_name(dtype));
  for_each_parameter("", [&](const std::string&, const Parameter& p) {
    if (is_floating(p->value.dtype()) && p->value.dtype() != dtype) {
      p->value = p->value.astype(dtype);
      p->grad.reset();
    }
  });
}

void Module::zero_grad() {
  for_each_parameter("", [](const std::string&, const Parameter& p) { p->grad.reset(); });
}

// ---- Sequential ------------------------------------------------------------------

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) append(std::move(m));
}

Sequential& Sequential::append(std::shared_ptr<Module> module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

autograd::Variable Sequential::forward(const autograd::Variable& x) {
  autograd::Variable y = x;
  for (const auto& [n, c] : children()) y = c->forward(y);
  return y;
}

// ---- initialisation --------------------------------------------------------------

Array uniform_init(const Shape& shape, double bound, std::uint64_t seed, DType dtype, Device device) {
  constexpr const char* op = "nn.uniform_init";
  check(std::isfinite(bound) && bound >= 0, op, "bound", "must be finite and >= 0, got ", bound);
  check<TypeError>(is_floating(dtype), op, "dtype", "must be floating, got ", dtype_name(dtype));
  // mt19937_64 is specified exactly by the standard; the [0, 1) mapping from
  // its top 53 bits is ours, so values are identical on every platform.
  std::mt19937_64 engine(seed);
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) {
    const double u = static_cast<double>(engine() >> 11) * 0x1.0p-53;
    v = (2.0 * u - 1.0) * bound;
  }
  Array host = Array::from_vector(values, shape, Device::cpu());
  if (dtype != DType::f64) host = host.astype(dtype);
  return host.to(device);
}

}  // namespace lattice::nn
