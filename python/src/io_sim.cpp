// I/O and simulation: the simulated LiDAR scans of `lattice train`, lattice's
// own safetensors reader/writer, and the trainable MinkUNet of the C++ side
// (MinkUNetTrainable, the reference that lattice.torch.models.MinkUNet
// mirrors: construction from a config and seed, state_dict / load_state_dict,
// train/eval, forward, one loss + gradients).
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/stl/array.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/core/stream.hpp"
#include "lattice/io/safetensors.hpp"
#include "lattice/models/minkunet_train.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/sim/lidar_scene.hpp"

namespace lattice::python {

namespace {

// (points (N, 3) float32, remission (N,) float32, labels (N,) uint32), NumPy.
nb::tuple simulate(std::uint64_t seed, int beams, int azimuth_steps, double min_range, double max_range,
                   double range_noise, double dropout, double sensor_height, int sweeps, double sweep_spacing) {
  sim::LidarSceneOptions o;
  o.seed = seed;
  o.beams = beams;
  o.azimuth_steps = azimuth_steps;
  o.min_range = min_range;
  o.max_range = max_range;
  o.range_noise = range_noise;
  o.dropout = dropout;
  o.sensor_height = sensor_height;
  o.sweeps = sweeps;
  o.sweep_spacing = sweep_spacing;
  io::PointCloud cloud = without_gil([&] { return sim::simulate_lidar_scan(o); });
  const Array* remission = cloud.field("remission");
  check(remission != nullptr && cloud.labels.has_value(), "simulate_lidar_scan", "scan",
        "the simulator returned no remission or labels");
  return nb::make_tuple(export_array(cloud.positions, Framework::numpy), export_array(*remission, Framework::numpy),
                        export_array(*cloud.labels, Framework::numpy));
}

nb::dict to_dict(const io::TensorDict& tensors) {
  nb::dict out;
  for (const auto& [name, array] : tensors) out[nb::str(name.c_str())] = export_array(array, Framework::numpy);
  return out;
}

// name -> array (any DLPack producer), in the dict's order.
io::TensorDict from_dict(const nb::dict& tensors, const char* op, const char* arg) {
  io::TensorDict out;
  for (auto [key, value] : tensors) {
    check<TypeError>(nb::isinstance<nb::str>(key), op, arg, "keys must be str");
    const std::string name = nb::cast<std::string>(key);
    InArray a;
    check<TypeError>(nb::try_cast(value, a), op, arg, "entry '", name, "' is not a C-contiguous array");
    out.emplace_back(name, import_array(a, op, arg));
  }
  return out;
}

nb::tuple load(const std::string& path) {
  io::Metadata metadata;
  io::TensorDict tensors = without_gil([&] { return io::load_safetensors(path, Device::cpu(), &metadata); });
  nb::dict meta;
  for (const auto& [k, v] : metadata) meta[nb::str(k.c_str())] = nb::str(v.c_str());
  return nb::make_tuple(to_dict(tensors), meta);
}

void save(const std::string& path, const nb::dict& tensors, const std::map<std::string, std::string>& metadata) {
  const io::TensorDict t = from_dict(tensors, "save_safetensors", "tensors");
  without_gil([&] { io::save_safetensors(path, t, metadata); });
}

void make_trainable(models::MinkUNetTrainable* self, int in_channels, int num_classes, int width,
                    const std::array<int, 8>& blocks, double bn_momentum, std::uint64_t seed, const std::string& dtype,
                    const std::string& device) {
  models::MinkUNetTrainableConfig c;
  c.in_channels = in_channels;
  c.num_classes = num_classes;
  c.width = width;
  c.blocks = blocks;
  c.bn_momentum = bn_momentum;
  c.seed = seed;
  c.dtype = float_dtype(dtype, "MinkUNetTrainable");
  c.device = parse_device(device);
  new (self) models::MinkUNetTrainable(c);
}

// Forward without gradients; in training mode batch norm uses and updates
// the batch statistics (as the model does when training).
SparseTensor trainable_forward(models::MinkUNetTrainable& model, const SparseTensor& x) {
  return without_gil([&] {
    autograd::NoGradGuard no_grad;
    return model.forward(autograd::Variable(x)).sparse();
  });
}

// Seconds per no-gradient forward of a loop run entirely in C++: the
// reference that lattice.torch's op-by-op path is measured against
// (bench/torch_overhead.py; diagnostic only).
double trainable_time_forward(models::MinkUNetTrainable& model, const SparseTensor& x, int iterations) {
  check(iterations >= 1, "MinkUNetTrainable._time_forward_cpp", "iterations", "must be >= 1, got ", iterations);
  return without_gil([&] {
    autograd::NoGradGuard no_grad;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) {
      const SparseTensor y = model.forward(autograd::Variable(x)).sparse();
      synchronize(y.device());  // waits for the device, as a caller reading the result does
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count() / iterations;
  });
}

// One training-mode forward, mean cross-entropy (labels int32 (N,), `ignore`
// skipped) and backward: (loss, dict name -> gradient), for parity tests.
nb::tuple trainable_loss_and_grads(models::MinkUNetTrainable& model, const SparseTensor& x, const InArray& labels,
                                   std::int64_t ignore) {
  const Array y = import_array(labels, "MinkUNetTrainable.loss_and_grads", "labels");
  const double loss = without_gil([&] {
    model.zero_grad();
    const autograd::Variable logits = model.forward(autograd::Variable(x));
    const autograd::Variable l = autograd::cross_entropy(logits, y, {.ignore_index = ignore});
    autograd::backward(l);
    return l.array().to(Device::cpu()).astype(DType::f64).data<double>()[0];
  });
  nb::dict grads;
  for (const auto& [name, p] : model.named_parameters()) {
    if (p->grad) grads[nb::str(name.c_str())] = export_array(*p->grad, Framework::numpy);
  }
  return nb::make_tuple(loss, grads);
}

}  // namespace

void bind_io_sim(nb::module_& m) {
  m.def("simulate_lidar_scan", &simulate, nb::arg("seed"), nb::arg("beams"), nb::arg("azimuth_steps"),
        nb::arg("min_range"), nb::arg("max_range"), nb::arg("range_noise"), nb::arg("dropout"),
        nb::arg("sensor_height"), nb::arg("sweeps"), nb::arg("sweep_spacing"));
  m.def("lidar_scene_defaults", []() {
    const sim::LidarSceneOptions o;
    nb::dict d;
    d["beams"] = o.beams;
    d["azimuth_steps"] = o.azimuth_steps;
    d["min_range"] = o.min_range;
    d["max_range"] = o.max_range;
    d["range_noise"] = o.range_noise;
    d["dropout"] = o.dropout;
    d["sensor_height"] = o.sensor_height;
    d["sweeps"] = o.sweeps;
    d["sweep_spacing"] = o.sweep_spacing;
    return d;
  });
  m.def("load_safetensors", &load, nb::arg("path"));
  m.def("save_safetensors", &save, nb::arg("path"), nb::arg("tensors"), nb::arg("metadata"));

  nb::class_<models::MinkUNetTrainable>(m, "MinkUNetTrainable")
      .def("__init__", &make_trainable, nb::arg("in_channels"), nb::arg("num_classes"), nb::arg("width"),
           nb::arg("blocks"), nb::arg("bn_momentum"), nb::arg("seed"), nb::arg("dtype") = "float32",
           nb::arg("device") = "cpu")
      .def("state_dict", [](const models::MinkUNetTrainable& model) { return to_dict(model.state_dict()); })
      .def(
          "load_state_dict",
          [](models::MinkUNetTrainable& model, const nb::dict& state) {
            const io::TensorDict t = from_dict(state, "MinkUNetTrainable.load_state_dict", "state");
            model.load_state_dict(t, true);
          },
          nb::arg("state"))
      .def(
          "train", [](models::MinkUNetTrainable& model, bool on) { model.train(on); }, nb::arg("mode"))
      .def("forward", &trainable_forward, nb::arg("x"))
      .def("_time_forward_cpp", &trainable_time_forward, nb::arg("x"), nb::arg("iterations"))
      .def("loss_and_grads", &trainable_loss_and_grads, nb::arg("x"), nb::arg("labels"), nb::arg("ignore_index"))
      .def_prop_ro("widths", &models::MinkUNetTrainable::widths)
      .def_prop_ro("num_parameters", &models::MinkUNetTrainable::num_parameters);
}

}  // namespace lattice::python
