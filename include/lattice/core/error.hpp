// Typed errors. Every public entry point validates its arguments before it
// changes any state and throws one of these, with a message of the form
//   "[op] argument 'name': what is wrong (got value)".
// The Python bindings map ValueError/TypeError/IoError onto the Python
// exceptions of the same name (IoError -> OSError).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lattice {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value is out of range, inconsistent with another argument, or malformed.
class ValueError : public Error {
 public:
  using Error::Error;
};

// An argument has the wrong dtype or kind (float coordinates, int features).
class TypeError : public Error {
 public:
  using Error::Error;
};

// Arguments live on different devices, or a device call failed.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A file could not be read or is malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

// The requested feature is not compiled into this build (e.g. CUDA).
class NotCompiledError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// "[op] argument 'arg': message"
template <class... Args>
std::string arg_message(std::string_view op, std::string_view arg, const Args&... args) {
  return concat("[", op, "] argument '", arg, "': ", args...);
}

}  // namespace detail

template <class E = ValueError, class... Args>
[[noreturn]] void fail(std::string_view op, std::string_view arg, const Args&... args) {
  throw E(detail::arg_message(op, arg, args...));
}

// Checks a condition that validates user input; throws E naming op and arg.
template <class E = ValueError, class... Args>
void check(bool ok, std::string_view op, std::string_view arg, const Args&... args) {
  if (!ok) fail<E>(op, arg, args...);
}

}  // namespace lattice
