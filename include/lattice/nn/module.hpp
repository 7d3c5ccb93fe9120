// Modules (SPEC §13, issue 5): containers of named parameters, buffers and
// child modules whose forward takes and returns autograd Variables.
//
// Names are dotted paths in registration order: a child registered as "conv1"
// holding a parameter "weight" gives "conv1.weight". These names are the keys
// of state_dict() and of the safetensors files written from it. Parameters
// are shared (nn::Parameter): optimizers built from parameters() see the same
// objects, and load_state_dict / to() replace their values in place of the
// object so those references stay valid.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lattice/autograd.hpp"
#include "lattice/core/array.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/nn/parameter.hpp"

namespace lattice::nn {

// An ordered name -> array map (registration order; parameters of a module
// before its buffers, then its children, recursively).
using StateDict = std::vector<std::pair<std::string, Array>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual autograd::Variable forward(const autograd::Variable& x) = 0;
  autograd::Variable operator()(const autograd::Variable& x) { return forward(x); }
  // The module's type, for messages ("Conv3d"); "Module" while a base
  // constructor runs (virtual calls do not reach the derived class yet).
  virtual std::string type_name() const { return "Module"; }

  std::vector<std::pair<std::string, Parameter>> named_parameters() const;
  std::vector<Parameter> parameters() const;
  std::vector<std::pair<std::string, Array>> named_buffers() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Copies of nothing: the arrays are the parameters' and buffers' own (shared
  // buffers); clone them before writing into them.
  StateDict state_dict() const;
  // Replaces parameter values and buffers with copies of the entries (moved
  // onto the current device of each). Shapes and dtypes must match exactly.
  // strict: every key of the module must be present and no unknown key given.
  // All checks run before anything is replaced.
  void load_state_dict(const StateDict& state, bool strict = true);

  // Training mode (dropout active, batch norm uses and updates batch
  // statistics); recursive. New modules are in training mode.
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Moves parameters (and their gradients) and buffers to `device`.
  void to(Device device);
  // Converts the floating parameters to `dtype` (gradients are dropped).
  // Buffers keep their dtype: batch-norm statistics are float32 by contract.
  void to(DType dtype);
  // Drops every parameter's gradient.
  void zero_grad();

 protected:
  // Registers under `name` (no dots, unique within this module).
  Parameter register_parameter(std::string name, Parameter parameter);
  void register_buffer(std::string name, Array value);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    add_child(std::move(name), module);
    return module;
  }
  const Array& buffer(std::string_view name) const;
  void set_buffer(std::string_view name, Array value);
  // The leaf Variable of a registered parameter (undefined for a null one).
  static autograd::Variable leaf(const Parameter& parameter);

 private:
  void add_child(std::string name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void for_each_parameter(const std::string& prefix,
                          const std::function<void(const std::string&, const Parameter&)>& fn) const;
  void for_each_buffer(const std::string& prefix, const std::function<void(const std::string&, Array&)>& fn);

  std::vector<std::pair<std::string, Parameter>> parameters_;
  std::vector<std::pair<std::string, Array>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Runs its children in order; children are named "0", "1", ...
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  Sequential& append(std::shared_ptr<Module> module);
  std::size_t size() const { return children().size(); }
  autograd::Variable forward(const autograd::Variable& x) override;
  std::string type_name() const override { return "Sequential"; }
};

// Deterministic initialisation as PyTorch does it, generated on the CPU in
// float64 from `seed`, converted to dtype, then moved to device:
// uniform(-bound, bound) with bound = 1/sqrt(fan_in) -- the value both
// kaiming_uniform(a = sqrt(5)) for weights and the bias rule give.
Array uniform_init(const Shape& shape, double bound, std::uint64_t seed, DType dtype, Device device);

}  // namespace lattice::nn
