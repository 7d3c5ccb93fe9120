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
#include <unordered_map>

#include "bindings.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/sparse_tensor.hpp"

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

std::shared_ptr<StructureHolder> holder_of(const InArray& token, const char* arg) {
  const Array t = import_array(token, k_op, arg);
  check<TypeError>(t.dtype() == DType::i64, k_op, arg, "a structure token is int64, got ", dtype_name(t.dtype()));
  check(t.device().is_cpu() && t.ndim() == 1 && t.dim(0) == 1, k_op, arg,
        "a structure token is a (1,) CPU tensor, got shape ", t.shape().str(), " on ", t.device().str());
  const std::int64_t id = *static_cast<const std::int64_t*>(t.raw());
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.holders.find(id);
  std::shared_ptr<StructureHolder> h = it == r.holders.end() ? nullptr : it->second.lock();
  check(h != nullptr, k_op, arg, "structure token ", id, " does not name a live structure");
  return h;
}

// The structure with zero feature channels (float32 placeholder).
SparseTensor structure_of(const InArray& token) {
  auto h = holder_of(token, "token");
  return SparseTensor(h->set, h->manager, Array::zeros(Shape{h->set->capacity(), 0}, DType::f32, h->set->device()));
}

// The structure with the given (rows, C) or (capacity, C) features. A CUDA
// set may have more capacity rows than active ones: active-row features are
// then copied into a capacity-sized array (the rest unused).
SparseTensor with_feats(const InArray& token, const InArray& feats) {
  auto h = holder_of(token, "token");
  Array f = import_array(feats, k_op, "feats");
  check(f.ndim() == 2, k_op, "feats", "expected (N, C), got shape ", f.shape().str());
  check<TypeError>(is_floating(f.dtype()), k_op, "feats", "expected a floating dtype, got ", dtype_name(f.dtype()));
  const std::int64_t capacity = h->set->capacity();
  if (f.dim(0) != capacity) {
    const std::int64_t rows = h->set->rows();
    check(f.dim(0) == rows, k_op, "feats", "has ", f.dim(0), " rows; the structure has ", rows);
    Array padded = Array::zeros(Shape{capacity, f.dim(1)}, f.dtype(), f.device());
    copy_bytes(padded.raw(), padded.device(), f.raw(), f.device(), f.nbytes());
    f = padded;
  }
  return SparseTensor(h->set, h->manager, std::move(f));
}

// Active-row features of a native tensor as a torch tensor (zero copy).
nb::object feats_of(const SparseTensor& x) { return export_array(x.feats().rows(0, x.rows()), Framework::torch); }

}  // namespace

void bind_torch_support(nb::module_& m) {
  m.def("structure_token", &structure_token, nb::arg("x"));
  m.def("structure_of", &structure_of, nb::arg("token"));
  m.def("with_feats", &with_feats, nb::arg("token"), nb::arg("feats"));
  m.def("feats_of", &feats_of, nb::arg("x"));
}

}  // namespace lattice::python
