#include "ops/common.hpp"

#include <cmath>

namespace lattice::ops::detail {

void check_input(const SparseTensor& x, const char* op, const char* arg) {
  check(x.defined(), op, arg, "undefined sparse tensor");
  check<TypeError>(is_floating(x.dtype()), op, arg, "features must be floating, got ", dtype_name(x.dtype()));
}

void check_same_key(const SparseTensor& a, const SparseTensor& b, const char* op) {
  check_input(a, op, "a");
  check_input(b, op, "b");
  check(a.key() == b.key(), op, "b", "coordinate key ", b.key().str(), " differs from ", a.key().str(),
        "; tensors with different keys must be aligned first");
  check<TypeError>(a.dtype() == b.dtype(), op, "b", "dtype ", dtype_name(b.dtype()), " differs from ",
                   dtype_name(a.dtype()));
  check<DeviceError>(a.device() == b.device(), op, "b", "is on ", b.device().str(), " but a is on ", a.device().str());
}

void check_vector(const std::optional<Array>& v, std::int64_t c, DType dtype, Device device, const char* op,
                  const char* arg) {
  if (!v) return;
  check(v->defined(), op, arg, "undefined array");
  check<TypeError>(v->dtype() == dtype, op, arg, "dtype ", dtype_name(v->dtype()), " differs from ", dtype_name(dtype));
  check(v->ndim() == 1 && v->dim(0) == c, op, arg, "must have shape (", c, ",), got ", v->shape().str());
  check<DeviceError>(v->device() == device, op, arg, "is on ", v->device().str(), " but the features are on ",
                     device.str());
}

void check_batch_norm_args(const SparseTensor& x, const BatchNormArgs& args, const char* op) {
  const std::int64_t c = x.channels();
  auto check_param = [&](const std::optional<Array>& v, const char* arg) {
    if (!v) return;
    const DType want = v->defined() && v->dtype() == DType::f32 ? DType::f32 : x.dtype();
    check_vector(v, c, want, x.device(), op, arg);
  };
  check_param(args.weight, "weight");
  check_param(args.bias, "bias");
  check(args.running_mean.defined(), op, "running_mean", "undefined array");
  check(args.running_var.defined(), op, "running_var", "undefined array");
  check_param(args.running_mean, "running_mean");
  check_param(args.running_var, "running_var");
  check(std::isfinite(args.eps) && args.eps > 0, op, "eps", "must be positive, got ", args.eps);
}

}  // namespace lattice::ops::detail
