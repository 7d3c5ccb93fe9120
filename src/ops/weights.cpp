#include "ops/weights.hpp"

namespace lattice::ops::detail {

std::int64_t check_weight(const Array& weight, const KernelSpec& spec, std::int64_t c_in, DType dtype, Device device,
                          const char* op) {
  check(weight.defined(), op, "weight", "undefined array");
  check<TypeError>(weight.dtype() == dtype, op, "weight", "dtype ", dtype_name(weight.dtype()),
                   " differs from the feature dtype ", dtype_name(dtype));
  check<DeviceError>(weight.device() == device, op, "weight", "is on ", weight.device().str(),
                     " but the features are on ", device.str());
  const std::int64_t volume = spec.volume();
  switch (weight.ndim()) {
    case 5:
      check(weight.dim(1) == spec.size.x && weight.dim(2) == spec.size.y && weight.dim(3) == spec.size.z, op, "weight",
            "dense layout (C_out, Kx, Ky, Kz, C_in) has spatial extent (", weight.dim(1), ", ", weight.dim(2), ", ",
            weight.dim(3), ") but kernel_size is ", spec.size.str());
      check(weight.dim(4) == c_in, op, "weight", "dense layout has C_in = ", weight.dim(4), " but the input has ", c_in,
            " channels (shape ", weight.shape().str(), ")");
      return weight.dim(0);
    case 3:
      check(weight.dim(0) == volume, op, "weight", "kernel-major layout (K, C_in, C_out) has K = ", weight.dim(0),
            " but kernel_size ", spec.size.str(), " has volume ", volume);
      check(weight.dim(1) == c_in, op, "weight", "kernel-major layout has C_in = ", weight.dim(1),
            " but the input has ", c_in, " channels (shape ", weight.shape().str(), ")");
      return weight.dim(2);
    case 2:
      check(volume == 1, op, "weight", "pointwise layout (C_out, C_in) needs a 1x1x1 kernel, but kernel_size is ",
            spec.size.str());
      check(weight.dim(1) == c_in, op, "weight", "pointwise layout has C_in = ", weight.dim(1), " but the input has ",
            c_in, " channels (shape ", weight.shape().str(), ")");
      return weight.dim(0);
    default:
      fail(op, "weight", "expected (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in), got shape ",
           weight.shape().str());
  }
}

}  // namespace lattice::ops::detail
