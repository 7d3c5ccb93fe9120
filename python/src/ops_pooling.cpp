// Pooling: local sum/max/avg pooling over a kernel relation, and global pooling.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/pooling.hpp"

namespace lattice::python {

namespace {

using I3 = std::array<int, 3>;

ops::PoolMode pool_mode(const std::string& mode, const char* op) {
  if (mode == "sum") return ops::PoolMode::sum;
  if (mode == "max") return ops::PoolMode::max;
  if (mode == "avg" || mode == "mean") return ops::PoolMode::avg;
  fail(op, "mode", "unknown pooling mode '", mode, "' (sum, max or avg)");
}

SparseTensor pool3d(const SparseTensor& x, const std::string& mode, I3 kernel_size, I3 stride, I3 padding,
                    I3 dilation) {
  ops::Pool3dParams p;
  p.kernel_size = to_int3(kernel_size);
  p.stride = to_int3(stride);
  p.padding = to_int3(padding);
  p.dilation = to_int3(dilation);
  const ops::PoolMode m = pool_mode(mode, "pool3d");
  return without_gil([&] { return ops::pool3d(x, m, p); });
}

nb::object global_pool(const SparseTensor& x, const std::string& mode, std::optional<std::int64_t> batch_size,
                       int framework) {
  return export_array(ops::global_pool(x, pool_mode(mode, "global_pool"), batch_size),
                      static_cast<Framework>(framework));
}

}  // namespace

void bind_ops_pooling(nb::module_& m) {
  m.def("pool3d", &pool3d, nb::arg("x"), nb::arg("mode"), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"),
        nb::arg("dilation"));
  m.def("global_pool", &global_pool, nb::arg("x"), nb::arg("mode"), nb::arg("batch_size").none(), nb::arg("framework"));
}

}  // namespace lattice::python
