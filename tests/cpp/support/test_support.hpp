// Shared helpers for the C++ tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "lattice/core/array.hpp"

namespace lattice::testing {

// ../shared/data (or $LATTICE_DATA_DIR) if it exists.
std::optional<std::filesystem::path> shared_data_dir();
// The path of a file under the shared data folder, if present.
std::optional<std::filesystem::path> shared_data_file(const std::string& relative);

// A fresh temporary directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& bytes);
std::string read_file(const std::filesystem::path& path);

// Deterministic random numbers for tests (seeded per test).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(engine_); }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(engine_);
  }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace lattice::testing

// Skips the current test with a message when the shared data file is absent.
#define LATTICE_REQUIRE_SHARED_FILE(var, relative)                                               \
  auto var##_opt = ::lattice::testing::shared_data_file(relative);                               \
  if (!var##_opt) GTEST_SKIP() << "../shared/data/" << (relative) << " is absent; test skipped"; \
  const std::filesystem::path var = *var##_opt

#include "lattice/core/sparse_tensor.hpp"
#include "support/dense_reference.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing {

// Unique random coordinates: for each batch item, every lattice site
// (multiples of `stride`) with logical coordinates in [lo, hi] is kept with
// probability `density`. Row order is shuffled.
std::vector<Coord> random_coords(Rng& rng, int batches, int lo, int hi, const I3& stride, double density);

// (N, 4) int32 host array from coordinates.
Array coords_array(const std::vector<Coord>& coords);
std::vector<Coord> coords_from_array(const Array& coords, std::int64_t rows);

// Random doubles in [-1, 1].
std::vector<double> random_values(Rng& rng, std::size_t n);
// Host array of `dtype` holding `values` (rounded to the dtype).
Array make_array(const std::vector<double>& values, const Shape& shape, DType dtype);
// The array's values as doubles (any float dtype, host).
std::vector<double> to_doubles(const Array& a);

// Per-element check |actual - expected| <= tol * magnitude (+ tiny absolute
// slack for zeros); returns a description of the first failures, empty if none.
std::string compare_elements(const std::vector<double>& actual, const std::vector<double>& expected,
                             const std::vector<double>& magnitude, double tol, std::size_t columns);

// SPEC §12 tolerance for a feature dtype.
double tolerance_for(DType dtype);

}  // namespace lattice::testing
