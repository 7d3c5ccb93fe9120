// The tape walker: Variable handles, recording, gradient accumulation and the
// reverse topological pass (include/lattice/autograd.hpp).
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"
#include "lattice/ops/features.hpp"
#include "ops/op_trace.hpp"

namespace lattice::autograd {

namespace {

thread_local bool t_grad_enabled = true;

const char* kind_name(const Value& v) { return std::holds_alternative<SparseTensor>(v) ? "sparse" : "dense"; }

// A one-row coordinate set per device: a dense array of n elements viewed as
// the (1, n) features of that row can be summed with ops::add, which gives
// the dense accumulation both backends without a kernel of our own.
SparseTensor unit_row(Device device) {
  static std::mutex mutex;
  // Never destroyed: freeing device memory during static destruction could
  // run after the CUDA runtime has shut down.
  static auto* cache = new std::map<std::string, SparseTensor>();
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(device.str());
  if (it != cache->end()) return it->second;
  SparseTensorOptions options;
  options.manager = CoordinateManager::create();
  SparseTensor host = SparseTensor::from_coords(Array::zeros(Shape{1, 4}, DType::i32, Device::cpu()),
                                                Array::zeros(Shape{1, 0}, DType::f32, Device::cpu()), options);
  SparseTensor row = host.to(device);
  cache->emplace(device.str(), row);
  return row;
}

Array add_dense(const Array& a, const Array& b) {
  check<TypeError>(a.dtype() == b.dtype(), "autograd.accumulate", "b", "dtype ", dtype_name(b.dtype()),
                   " differs from ", dtype_name(a.dtype()));
  check(a.shape() == b.shape(), "autograd.accumulate", "b", "shape ", b.shape().str(), " differs from ",
        a.shape().str());
  check<DeviceError>(a.device() == b.device(), "autograd.accumulate", "b", "is on ", b.device().str(), " but a is on ",
                     a.device().str());
  if (a.numel() == 0) return a;
  const SparseTensor row = unit_row(a.device());
  const Shape flat{1, a.numel()};
  const SparseTensor sa = row.replace_feats(a.reshape(flat));
  const SparseTensor sb = row.replace_feats(b.reshape(flat));
  return ops::add(sa, sb).feats().reshape(a.shape());
}

// The gradient a Value of this form should receive, for checks on seeds and
// on what a backward closure returns.
void check_grad_form(const Value& value, const Value& grad, const std::string& op, const char* arg) {
  check<TypeError>(value.index() == grad.index(), op, arg, "a ", kind_name(value), " value got a ", kind_name(grad),
                   " gradient");
  if (const auto* s = std::get_if<SparseTensor>(&value)) {
    const auto& g = std::get<SparseTensor>(grad);
    check(g.defined(), op, arg, "undefined sparse gradient");
    check(g.key() == s->key(), op, arg, "gradient key ", g.key().str(), " differs from the value's key ",
          s->key().str());
    check(g.channels() == s->channels(), op, arg, "gradient has ", g.channels(), " channels, the value ",
          s->channels());
  } else {
    const auto& a = std::get<Array>(value);
    const auto& g = std::get<Array>(grad);
    check(g.defined(), op, arg, "undefined dense gradient");
    check(g.shape() == a.shape(), op, arg, "gradient shape ", g.shape().str(), " differs from the value's ",
          a.shape().str());
  }
}

void deliver_to_leaf(VariableData& leaf, const Value& g) {
  if (leaf.parameter) {
    nn::ParameterData& p = *leaf.parameter;
    const Array& ga = std::get<Array>(g);
    // A new array: optimizers write grads in place only through their own state.
    p.grad = p.grad ? add_dense(*p.grad, ga) : ga.clone();
    return;
  }
  if (leaf.grad) {
    leaf.grad = accumulate(*leaf.grad, g);
  } else if (const auto* s = std::get_if<SparseTensor>(&g)) {
    leaf.grad = Value{s->replace_feats(s->feats().clone())};
  } else {
    leaf.grad = Value{std::get<Array>(g).clone()};
  }
}

}  // namespace

// ---- Variable ----------------------------------------------------------------

Variable::Variable(SparseTensor value, bool requires_grad) : data_(std::make_shared<VariableData>()) {
  check(value.defined(), "autograd.Variable", "value", "undefined sparse tensor");
  check<TypeError>(!requires_grad || is_floating(value.dtype()), "autograd.Variable", "requires_grad",
                   "only float features can require a gradient, got ", dtype_name(value.dtype()));
  data_->value = std::move(value);
  data_->requires_grad = requires_grad;
}

Variable::Variable(Array value, bool requires_grad) : data_(std::make_shared<VariableData>()) {
  check(value.defined(), "autograd.Variable", "value", "undefined array");
  check<TypeError>(!requires_grad || is_floating(value.dtype()), "autograd.Variable", "requires_grad",
                   "only float arrays can require a gradient, got ", dtype_name(value.dtype()));
  data_->value = std::move(value);
  data_->requires_grad = requires_grad;
}

Variable Variable::from_parameter(const nn::Parameter& parameter) {
  check(parameter != nullptr, "autograd.Variable.from_parameter", "parameter", "null parameter");
  Variable v(parameter->value, parameter->requires_grad);
  v.data_->parameter = parameter;
  return v;
}

Variable Variable::from_node(Value value, std::shared_ptr<Node> node) {
  Variable v;
  v.data_ = std::make_shared<VariableData>();
  v.data_->value = std::move(value);
  v.data_->requires_grad = true;
  v.data_->node = std::move(node);
  return v;
}

bool Variable::is_sparse() const { return std::holds_alternative<SparseTensor>(value()); }

const Value& Variable::value() const {
  check(defined(), "autograd.Variable", "self", "undefined variable");
  return data_->value;
}

const SparseTensor& Variable::sparse() const {
  const auto* s = std::get_if<SparseTensor>(&value());
  check<TypeError>(s != nullptr, "autograd.Variable.sparse", "self", "holds a dense array, not a sparse tensor");
  return *s;
}

const Array& Variable::array() const {
  const auto* a = std::get_if<Array>(&value());
  check<TypeError>(a != nullptr, "autograd.Variable.array", "self", "holds a sparse tensor, not a dense array");
  return *a;
}

std::optional<Value> Variable::grad() const {
  if (!data_) return std::nullopt;
  if (data_->parameter) {
    if (!data_->parameter->grad) return std::nullopt;
    return Value{*data_->parameter->grad};
  }
  return data_->grad;
}

void Variable::zero_grad() {
  if (!data_) return;
  data_->grad.reset();
  if (data_->parameter) data_->parameter->grad.reset();
}

Variable Variable::detach() const {
  Variable v;
  v.data_ = std::make_shared<VariableData>();
  v.data_->value = value();
  return v;
}

// ---- recording -----------------------------------------------------------------

bool grad_enabled() { return t_grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Variable apply(std::string name, Value output, std::vector<Variable> inputs, BackwardFn backward) {
  bool needs = false;
  for (const Variable& in : inputs) needs = needs || in.requires_grad();
  if (!t_grad_enabled || !needs) {
    Variable v;
    if (std::holds_alternative<SparseTensor>(output)) return Variable(std::get<SparseTensor>(std::move(output)));
    return Variable(std::get<Array>(std::move(output)));
  }
  auto node = std::make_shared<Node>();
  node->name = std::move(name);
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  return Variable::from_node(std::move(output), std::move(node));
}

Value accumulate(const Value& a, const Value& b) {
  check<TypeError>(a.index() == b.index(), "autograd.accumulate", "b", "cannot add a ", kind_name(b), " gradient to a ",
                   kind_name(a), " one");
  if (const auto* sa = std::get_if<SparseTensor>(&a)) return Value{ops::add(*sa, std::get<SparseTensor>(b))};
  return Value{add_dense(std::get<Array>(a), std::get<Array>(b))};
}

// ---- backward ----------------------------------------------------------------

void backward(const Variable& loss, const BackwardOptions& options) {
  check(loss.defined(), "autograd.backward", "loss", "undefined variable");
  const auto* a = std::get_if<Array>(&loss.value());
  check(a != nullptr && a->numel() == 1, "autograd.backward", "loss",
        "must be a one-element dense array without an explicit seed gradient, got ",
        a ? a->shape().str() : std::string("a sparse tensor"));
  check<TypeError>(is_floating(a->dtype()), "autograd.backward", "loss", "must be floating, got ",
                   dtype_name(a->dtype()));
  backward(loss, Value{Array::full(a->shape(), a->dtype(), 1.0, a->device())}, options);
}

void backward(const Variable& output, const Value& seed, const BackwardOptions& options) {
  constexpr const char* op = "autograd.backward";
  check(output.defined(), op, "output", "undefined variable");
  check(output.requires_grad(), op, "output", "does not require a gradient (no input on its path requires one)");
  check_grad_form(output.value(), seed, op, "seed");

  // Depth-first post-order over the variables that need a gradient. An
  // explicit stack keeps deep networks off the call stack.
  std::vector<VariableData*> order;
  std::unordered_set<VariableData*> seen;
  struct Frame {
    VariableData* v;
    std::size_t next;
  };
  std::vector<Frame> stack{{output.data().get(), 0}};
  seen.insert(output.data().get());
  while (!stack.empty()) {
    Frame& f = stack.back();
    Node* node = f.v->node.get();
    if (node && f.next < node->inputs.size()) {
      const Variable& in = node->inputs[f.next++];
      if (in.requires_grad() && seen.insert(in.data().get()).second) stack.push_back({in.data().get(), 0});
      continue;
    }
    order.push_back(f.v);
    stack.pop_back();
  }
  for (VariableData* v : order) {
    if (v->node && v->node->released) {
      fail(op, "output", "the graph through '", v->node->name,
           "' was already used by a backward pass; pass retain_graph = true to run backward twice");
    }
  }

  std::unordered_map<VariableData*, Value> pending;
  pending.emplace(output.data().get(), seed);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VariableData* v = *it;
    auto found = pending.find(v);
    if (found == pending.end()) continue;  // no path from the output carried a gradient here
    const Value g = std::move(found->second);
    pending.erase(found);
    if (!v->node) {
      deliver_to_leaf(*v, g);
      continue;
    }
    Node& node = *v->node;
    // Under a TraceSession each node's VJP is one record ("<name>.backward";
    // ops the VJP calls through public front ends record themselves too).
    ops::detail::OpTrace trace(std::visit([](const auto& t) { return t.device(); }, g));
    std::vector<std::optional<Value>> grads = node.backward(g);
    if (trace.active()) {
      OpRecord record;
      record.op = node.name + ".backward";
      trace.record(std::move(record), nullptr, nullptr, nullptr, false);
    }
    check(grads.size() == node.inputs.size(), node.name, "backward", "returned ", grads.size(), " gradients for ",
          node.inputs.size(), " inputs");
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Variable& in = node.inputs[i];
      if (!grads[i] || !in.requires_grad()) continue;
      check_grad_form(in.value(), *grads[i], node.name, "backward");
      auto [slot, inserted] = pending.try_emplace(in.data().get(), *grads[i]);
      if (!inserted) slot->second = accumulate(slot->second, *grads[i]);
    }
    if (!options.retain_graph) {
      node.released = true;
      node.backward = nullptr;  // frees what the closure saved
    }
  }
}

}  // namespace lattice::autograd
