// Reverse-mode automatic differentiation over sparse tensors and dense arrays
// (SPEC §13). A small tape: every differentiable function below runs its
// forward op and, when any input needs a gradient (and no NoGradGuard is
// active), records a Node holding what the op's vector-Jacobian product needs
// (include/lattice/ops/*_grad.hpp) and a backward closure.
//
// backward(loss) walks the nodes reachable from `loss` in reverse topological
// order (a depth-first post-order over the recorded inputs, so the order and
// therefore every floating-point sum is fixed: results are bitwise identical
// run to run). A value used several times (branches, skip connections, cat)
// receives the sum of its gradients, formed with ops::add (sparse, same key)
// or the dense equivalent, in recording order. Leaves that require a gradient
// accumulate into Variable::grad() across backward passes; leaves made from
// an nn::Parameter accumulate into ParameterData::grad (created or added).
//
// Gradients have the form of their value: a SparseTensor gradient lives on the
// value's coordinate key (its capacity), a dense gradient has the value's shape.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/parameter.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/resample.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::autograd {

// A value (or a gradient) the tape carries: sparse features or a dense array.
using Value = std::variant<SparseTensor, Array>;

struct Node;

// Shared state behind a Variable handle (copies of a Variable share it).
struct VariableData {
  Value value;
  bool requires_grad = false;
  std::optional<Value> grad;   // accumulated gradient of a leaf
  std::shared_ptr<Node> node;  // the node that produced the value; null for leaves
  nn::Parameter parameter;     // set for leaves made from a parameter
};

class Variable {
 public:
  Variable() = default;  // undefined (used for "no bias" and the like)
  explicit Variable(SparseTensor value, bool requires_grad = false);
  explicit Variable(Array value, bool requires_grad = false);
  // A leaf on the parameter's current value; gradients go to parameter->grad.
  static Variable from_parameter(const nn::Parameter& parameter);
  // Internal: a non-leaf produced by `node`.
  static Variable from_node(Value value, std::shared_ptr<Node> node);

  bool defined() const { return data_ != nullptr; }
  bool is_sparse() const;
  const Value& value() const;
  const SparseTensor& sparse() const;  // throws TypeError unless sparse
  const Array& array() const;          // throws TypeError unless dense
  bool requires_grad() const { return data_ && data_->requires_grad; }
  bool is_leaf() const { return data_ && !data_->node; }
  // Accumulated gradient of a leaf (a parameter's leaf reports the parameter's).
  std::optional<Value> grad() const;
  void zero_grad();
  // Same value, cut from the graph (a leaf without gradient).
  Variable detach() const;
  const std::shared_ptr<VariableData>& data() const { return data_; }

 private:
  std::shared_ptr<VariableData> data_;
};

// The backward closure: dL/d(output) -> dL/d(input i) for each recorded
// input (nullopt: no gradient for that input, e.g. not requested).
using BackwardFn = std::function<std::vector<std::optional<Value>>(const Value& grad_output)>;

struct Node {
  std::string name;              // the op, for error messages
  std::vector<Variable> inputs;  // recorded inputs, in argument order
  BackwardFn backward;
  bool released = false;  // backward ran without retain_graph
};

// Records a differentiable function: `output` computed from `inputs`, with
// `backward` giving one optional gradient per input. Returns a plain value
// (no node) when gradients are disabled or no input requires one. This is the
// extension point for ops defined outside lattice (e.g. a loss).
Variable apply(std::string name, Value output, std::vector<Variable> inputs, BackwardFn backward);

// Whether functions record nodes on this thread.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

struct BackwardOptions {
  bool retain_graph = false;  // keep the nodes' closures for another backward pass
};

// loss: a one-element dense Variable (seeded with 1).
void backward(const Variable& loss, const BackwardOptions& options = {});
// Any Variable with an explicit seed gradient of the value's form.
void backward(const Variable& output, const Value& seed, const BackwardOptions& options = {});

// Gradient sums used by the engine: ops::add for same-key sparse tensors, an
// elementwise dense add for arrays of one shape, dtype and device.
Value accumulate(const Value& a, const Value& b);

// ---- feature ops, algebra and rows (src/autograd/functions.cpp) -------------

Variable linear(const Variable& x, const Variable& weight, const Variable& bias = {});
Variable activation(const Variable& x, const ops::ActivationParams& params);
Variable relu(const Variable& x);
Variable leaky_relu(const Variable& x, double negative_slope = 0.01);
Variable gelu(const Variable& x, bool approximate = false);
Variable silu(const Variable& x);
Variable sigmoid(const Variable& x);
Variable tanh(const Variable& x);
Variable softplus(const Variable& x);
Variable dropout(const Variable& x, const ops::DropoutParams& params = {});

// Batch norm: args carries the running statistics, training flag, momentum and
// eps; weight/bias (optional Variables) replace args.weight/args.bias. The
// updated running statistics come back for the caller (nn::BatchNorm keeps them).
struct BatchNormOutput {
  Variable output;
  Array running_mean;
  Array running_var;
};
BatchNormOutput batch_norm(const Variable& x, const Variable& weight, const Variable& bias,
                           const ops::BatchNormArgs& args);
Variable layer_norm(const Variable& x, const Variable& weight = {}, const Variable& bias = {}, double eps = 1e-5);
Variable rms_norm(const Variable& x, const Variable& weight = {}, double eps = 1e-5);

Variable add(const Variable& a, const Variable& b);  // same key
Variable sparse_binary(ops::BinaryOp op, const Variable& lhs, const Variable& rhs,
                       const ops::BinaryParams& params = {});
Variable cat(const Variable& a, const Variable& b);

Variable prune(const Variable& x, const Array& rows);
Variable prune_mask(const Variable& x, const Array& mask);
Variable crop(const Variable& x, Int3 min_coord, Int3 max_coord);
Variable topk_rows(const Variable& x, const Array& counts, double rho);

// Scalar loss over sparse (active rows) or dense (N, C) logits; labels are
// constants. backward(loss) seeds it with 1 (nn::cross_entropy_backward's
// grad_loss carries any other upstream value).
Variable cross_entropy(const Variable& logits, const Array& labels, const nn::CrossEntropyParams& params = {});

// ---- convolution, pooling, resampling (src/autograd/functions_spatial.cpp) --
// weight: a dense Variable in any layout the forward accepts; bias optional.

Variable conv3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                const ops::Conv3dParams& params = {});
Variable subm_conv3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                     const ops::SubmConv3dParams& params = {});
Variable conv_transpose3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                          const ops::ConvTranspose3dParams& params = {});
Variable generative_conv_transpose3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                                     const ops::GenerativeConvTranspose3dParams& params = {});
Variable normalized_subm_conv3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                                const ops::NormalizedSubmConv3dParams& params = {});
Variable normalized_conv_transpose3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                                     const ops::NormalizedConvTranspose3dParams& params = {});
Variable normalized_generative_conv_transpose3d(const Variable& x, const Variable& weight, const Variable& bias = {},
                                                const ops::NormalizedGenerativeConvTranspose3dParams& params = {});

Variable pool3d(const Variable& x, ops::PoolMode mode, const ops::Pool3dParams& params = {});
// Dense (B, C) result.
Variable global_pool(const Variable& x, ops::PoolMode mode, std::optional<std::int64_t> batch_size = std::nullopt);
Variable pool_transpose3d(const Variable& x, const ops::PoolTranspose3dParams& params = {});
Variable trilinear_upsample3d(const Variable& x, const ops::TrilinearUpsample3dParams& params = {});
// Dense (N, C) features at the points; points and the maps are constants.
Variable devoxelize(const Variable& x, const Array& points, const ops::DevoxelizeParams& params,
                    const std::optional<Array>& point_voxel_map = std::nullopt,
                    const std::optional<Array>& batch_indices = std::nullopt);

}  // namespace lattice::autograd
