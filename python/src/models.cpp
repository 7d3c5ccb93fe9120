// Models: the functional MinkUNet (seeded weights, inference forward).
#include <chrono>
#include <cstdint>
#include <new>
#include <string>

#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/models/minkunet.hpp"

namespace lattice::python {

DType float_dtype(const std::string& name, const char* op) {
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  fail<TypeError>(op, "dtype", "expected float16, bfloat16, float32 or float64, got '", name, "'");
}

namespace {

void make_minkunet(models::MinkUNet* self, int in_channels, int num_classes, int width, std::uint64_t seed,
                   const std::string& dtype, const std::string& device, bool batch_statistics) {
  models::MinkUNetConfig config;
  config.in_channels = in_channels;
  config.num_classes = num_classes;
  config.width = width;
  config.batch_statistics = batch_statistics;
  const DType t = float_dtype(dtype, "MinkUNet");
  new (self) models::MinkUNet(config, seed, t, parse_device(device));
}

// Seconds per forward of a loop run entirely in C++ (the reference for the
// Python call overhead; diagnostic only).
double time_forward_cpp(const models::MinkUNet& model, const SparseTensor& x, int iterations) {
  check(iterations >= 1, "MinkUNet._time_forward_cpp", "iterations", "must be >= 1, got ", iterations);
  return without_gil([&] {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) {
      const SparseTensor y = model.forward(x);
      (void)y.rows();  // host-facing: waits for the device like a Python caller reading the result
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count() / iterations;
  });
}

}  // namespace

void bind_models(nb::module_& m) {
  nb::class_<models::MinkUNet>(m, "MinkUNet")
      .def("__init__", &make_minkunet, nb::arg("in_channels"), nb::arg("num_classes"), nb::arg("width"),
           nb::arg("seed"), nb::arg("dtype"), nb::arg("device"), nb::arg("batch_statistics"))
      .def(
          "forward",
          [](const models::MinkUNet& model, const SparseTensor& x) {
            return without_gil([&] { return model.forward(x); });
          },
          nb::arg("x"))
      .def_prop_ro("num_parameters", &models::MinkUNet::num_parameters)
      .def_prop_ro("in_channels", [](const models::MinkUNet& model) { return model.config().in_channels; })
      .def_prop_ro("num_classes", [](const models::MinkUNet& model) { return model.config().num_classes; })
      .def("_time_forward_cpp", &time_forward_cpp, nb::arg("x"), nb::arg("iterations"));
}

}  // namespace lattice::python
