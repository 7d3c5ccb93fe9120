// Error-path assertions shared by the tests.
#pragma once

#include <cstring>
#include <initializer_list>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/error.hpp"

namespace lattice::testing {

inline std::string error_kind(const std::exception& e) {
  if (dynamic_cast<const ValueError*>(&e)) return "ValueError";
  if (dynamic_cast<const TypeError*>(&e)) return "TypeError";
  if (dynamic_cast<const DeviceError*>(&e)) return "DeviceError";
  if (dynamic_cast<const IoError*>(&e)) return "IoError";
  if (dynamic_cast<const NotCompiledError*>(&e)) return "NotCompiledError";
  if (dynamic_cast<const Error*>(&e)) return "lattice::Error";
  return "std::exception";
}

// Expects `fn` to throw E (a sibling type fails) with every fragment in its
// message. With a manager, also checks that the failed call left the
// manager's relation cache as it was ("before any state changes").
template <class E, class F>
void expect_error(const std::shared_ptr<CoordinateManager>& manager, F&& fn,
                  std::initializer_list<std::string_view> fragments,
                  std::source_location loc = std::source_location::current()) {
  const ::testing::ScopedTrace trace(loc.file_name(), static_cast<int>(loc.line()), "expected error");
  const std::size_t relations_before = manager ? manager->cache_stats().relations : 0;
  try {
    fn();
    ADD_FAILURE() << "no exception was thrown";
  } catch (const E& e) {
    const std::string what = e.what();
    for (std::string_view f : fragments) {
      EXPECT_NE(what.find(f), std::string::npos) << "message lacks \"" << f << "\": " << what;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type " << error_kind(e) << ": " << e.what();
  }
  if (manager) {
    EXPECT_EQ(manager->cache_stats().relations, relations_before)
        << "a failed call changed the manager's relation cache";
  }
}

template <class E, class F>
void expect_error(F&& fn, std::initializer_list<std::string_view> fragments,
                  std::source_location loc = std::source_location::current()) {
  expect_error<E>(nullptr, std::forward<F>(fn), fragments, loc);
}

// The raw bytes of a host array (to prove inputs are not mutated).
inline std::vector<unsigned char> bytes_of(const Array& a) {
  const Array host = a.to(Device::cpu());
  std::vector<unsigned char> out(host.nbytes());
  if (!out.empty()) std::memcpy(out.data(), host.raw(), out.size());
  return out;
}

}  // namespace lattice::testing
