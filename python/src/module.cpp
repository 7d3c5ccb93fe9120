// lattice._native: the extension module. Private; the public API is the
// pure-Python package `lattice`, which documents shapes and dtypes.
//
// Errors: lattice::ValueError -> ValueError, TypeError -> TypeError,
// DeviceError -> lattice.DeviceError (a ValueError), IoError -> OSError,
// NotCompiledError -> lattice.NotCompiledError (a RuntimeError), any other
// lattice::Error -> RuntimeError; all carry the C++ message.
#include "bindings.hpp"
#include "lattice/core/error.hpp"

namespace lattice::python {
namespace {

void bind_errors(nb::module_& m) {
  // Owned for the life of the process (never released: no teardown after Python finalizes).
  static PyObject* device_error = PyErr_NewException("lattice.DeviceError", PyExc_ValueError, nullptr);
  static PyObject* not_compiled = PyErr_NewException("lattice.NotCompiledError", PyExc_RuntimeError, nullptr);
  m.attr("DeviceError") = nb::handle(device_error);
  m.attr("NotCompiledError") = nb::handle(not_compiled);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const lattice::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const lattice::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const lattice::DeviceError& e) {
      PyErr_SetString(device_error, e.what());
    } catch (const lattice::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const lattice::NotCompiledError& e) {
      PyErr_SetString(not_compiled, e.what());
    } catch (const lattice::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace
}  // namespace lattice::python

NB_MODULE(_native, m) {
  m.doc() = "lattice native extension (private: use the `lattice` package)";
  lattice::python::bind_errors(m);
  lattice::python::bind_core(m);
  lattice::python::bind_ops_conv(m);
  lattice::python::bind_ops_features(m);
  lattice::python::bind_ops_pooling(m);
  lattice::python::bind_ops_voxelize(m);
  lattice::python::bind_models(m);
  lattice::python::bind_quant(m);
  lattice::python::bind_torch_support(m);
  lattice::python::bind_ops_grad(m);
  lattice::python::bind_io_sim(m);
}
