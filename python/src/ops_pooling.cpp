// Pooling: local sum/max/avg pooling over a kernel relation, and global pooling.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/pooling.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

SparseTensor pool3d(const SparseTensor& x, const std::string& mode, I3 kernel_size, I3 stride, I3 padding,
                    I3 dilation) {
  const ops::Pool3dParams p = pool3d_params(kernel_size, stride, padding, dilation);
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
