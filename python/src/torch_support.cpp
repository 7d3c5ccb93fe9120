// Support for lattice.torch: structure tokens.
//
// A structure token is a CPU int64 tensor of shape (1,) holding a unique id.
// Its storage is lattice memory whose owner holds a coordinate structure (the
// coordinate set and manager of a native SparseTensor, features dropped), so
// every alias of the token (detach, autograd's saved tensors) keeps the
// structure alive. A registry maps id -> weak owner; a copy of a token (a new
// storage with the same id) still resolves while any alias of the original
// lives. Custom ops take tokens as ordinary tensor arguments, which lets
// torch.compile trace them without specializing on a Python object.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <nanobind/stl/optional.h>

#include "bindings.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/features.hpp"

namespace lattice::python {

namespace {

struct StructureHolder;

// Leaked on purpose: holders may die during interpreter teardown, after
// function-local statics would have been destroyed.
struct Registry {
  std::mutex mutex;
  std::unordered_map<std::int64_t, std::weak_ptr<StructureHolder>> holders;
  std::atomic<std::int64_t> next_id{1};
};
Registry& registry() {
  static auto* r = new Registry();
  return *r;
}

struct StructureHolder {
  std::int64_t id = 0;  // the token's single element
  std::shared_ptr<const CoordinateSet> set;
  std::shared_ptr<CoordinateManager> manager;

  StructureHolder() = default;
  StructureHolder(const StructureHolder&) = delete;
  StructureHolder& operator=(const StructureHolder&) = delete;
  ~StructureHolder() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.holders.find(id);
    if (it != r.holders.end() && it->second.expired()) r.holders.erase(it);
  }
};

constexpr const char* k_op = "lattice.torch";

nb::object structure_token(const SparseTensor& x) {
  check(x.defined(), k_op, "x", "undefined tensor");
  auto holder = std::make_shared<StructureHolder>();
  holder->set = x.coordinate_set();
  holder->manager = x.manager();
  Registry& r = registry();
  holder->id = r.next_id.fetch_add(1);
  {
    std::lock_guard lock(r.mutex);
    r.holders[holder->id] = holder;
  }
  Array token = Array::from_external(&holder->id, Shape{1}, DType::i64, Device::cpu(), holder);
  return export_array(token, Framework::torch);
}

std::shared_ptr<StructureHolder> holder_by_id(std::int64_t id, const char* arg) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.holders.find(id);
  std::shared_ptr<StructureHolder> h = it == r.holders.end() ? nullptr : it->second.lock();
  check(h != nullptr, k_op, arg, "structure token ", id, " does not name a live structure");
  return h;
}

std::shared_ptr<StructureHolder> holder_of(const InArray& token, const char* arg) {
  const Array t = import_array(token, k_op, arg);
  check<TypeError>(t.dtype() == DType::i64, k_op, arg, "a structure token is int64, got ", dtype_name(t.dtype()));
  check(t.device().is_cpu() && t.ndim() == 1 && t.dim(0) == 1, k_op, arg,
        "a structure token is a (1,) CPU tensor, got shape ", t.shape().str(), " on ", t.device().str());
  return holder_by_id(*static_cast<const std::int64_t*>(t.raw()), arg);
}

// The structure with zero feature channels (float32 placeholder).
SparseTensor structure_from(const StructureHolder& h) {
  return SparseTensor(h.set, h.manager, Array::zeros(Shape{h.set->capacity(), 0}, DType::f32, h.set->device()));
}

// The structure with the given (rows, C) or (capacity, C) features. A CUDA
// set may have more capacity rows than active ones: active-row features are
// then copied into a capacity-sized array (the rest unused).
SparseTensor attach_feats(std::shared_ptr<const CoordinateSet> set, std::shared_ptr<CoordinateManager> manager,
                          const InArray& feats) {
  Array f = import_array(feats, k_op, "feats");
  check(f.ndim() == 2, k_op, "feats", "expected (N, C), got shape ", f.shape().str());
  check<TypeError>(is_floating(f.dtype()), k_op, "feats", "expected a floating dtype, got ", dtype_name(f.dtype()));
  const std::int64_t capacity = set->capacity();
  if (f.dim(0) != capacity) {
    const std::int64_t rows = set->rows();
    check(f.dim(0) == rows, k_op, "feats", "has ", f.dim(0), " rows; the structure has ", rows);
    Array padded = Array::zeros(Shape{capacity, f.dim(1)}, f.dtype(), f.device());
    copy_bytes(padded.raw(), padded.device(), f.raw(), f.device(), f.nbytes());
    f = padded;
  }
  return SparseTensor(std::move(set), std::move(manager), std::move(f));
}

SparseTensor with_feats_token(const InArray& token, const InArray& feats) {
  auto h = holder_of(token, "token");
  return attach_feats(h->set, h->manager, feats);
}

// By id: the caller keeps a token (or the structure) alive; an id whose
// structure is gone is a ValueError. Skips the DLPack import of the token.
SparseTensor with_feats_id(std::int64_t id, const InArray& feats) {
  auto h = holder_by_id(id, "token");
  return attach_feats(h->set, h->manager, feats);
}

// On the structure of a native tensor (its features are ignored).
SparseTensor with_feats_structure(const SparseTensor& structure, const InArray& feats) {
  check(structure.defined(), k_op, "structure", "undefined tensor");
  return attach_feats(structure.coordinate_set(), structure.manager(), feats);
}

// Inference-mode batch norm for the no-grad fast path of lattice.torch: the
// normalised tensor only (no exports of the unchanged running statistics).
SparseTensor batch_norm_infer(const SparseTensor& x, const InArray& running_mean, const InArray& running_var,
                              const std::optional<InArray>& weight, const std::optional<InArray>& bias, double eps) {
  ops::BatchNormArgs args;
  args.running_mean = import_array(running_mean, "batch_norm", "running_mean");
  args.running_var = import_array(running_var, "batch_norm", "running_var");
  args.weight = import_optional(weight, "batch_norm", "weight");
  args.bias = import_optional(bias, "batch_norm", "bias");
  args.training = false;
  args.eps = eps;
  return without_gil([&] { return ops::batch_norm(x, args).output; });
}

// Active-row features of a native tensor as a torch tensor (zero copy).
nb::object feats_of(const SparseTensor& x) { return export_array(x.feats().rows(0, x.rows()), Framework::torch); }

}  // namespace

void bind_torch_support(nb::module_& m) {
  m.def("structure_token", &structure_token, nb::arg("x"));
  m.def(
      "structure_of", [](std::int64_t id) { return structure_from(*holder_by_id(id, "token")); }, nb::arg("token"));
  m.def(
      "structure_of", [](const InArray& token) { return structure_from(*holder_of(token, "token")); },
      nb::arg("token"));
  m.def("with_feats", &with_feats_structure, nb::arg("token"), nb::arg("feats"));
  m.def("with_feats", &with_feats_id, nb::arg("token"), nb::arg("feats"));
  m.def("with_feats", &with_feats_token, nb::arg("token"), nb::arg("feats"));
  m.def("batch_norm_infer", &batch_norm_infer, nb::arg("x"), nb::arg("running_mean"), nb::arg("running_var"),
        nb::arg("weight").none(), nb::arg("bias").none(), nb::arg("eps"));
  m.def("feats_of", &feats_of, nb::arg("x"));
}

}  // namespace lattice::python
