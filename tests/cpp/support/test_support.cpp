#include "support/test_support.hpp"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

namespace lattice::testing {

std::optional<std::filesystem::path> shared_data_dir() {
  if (const char* env = std::getenv("LATTICE_DATA_DIR"); env != nullptr && *env != '\0') {
    if (std::filesystem::is_directory(env)) return std::filesystem::path(env);
    return std::nullopt;
  }
  const std::filesystem::path dir(LATTICE_SHARED_DATA_DIR);
  if (std::filesystem::is_directory(dir)) return dir;
  return std::nullopt;
}

std::optional<std::filesystem::path> shared_data_file(const std::string& relative) {
  auto dir = shared_data_dir();
  if (!dir) return std::nullopt;
  auto p = *dir / relative;
  if (!std::filesystem::is_regular_file(p)) return std::nullopt;
  return p;
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("lattice-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

}  // namespace lattice::testing

#include <algorithm>
#include <cmath>
#include <sstream>

namespace lattice::testing {

std::vector<Coord> random_coords(Rng& rng, int batches, int lo, int hi, const I3& stride, double density) {
  std::vector<Coord> out;
  for (int b = 0; b < batches; ++b)
    for (int x = lo; x <= hi; ++x)
      for (int y = lo; y <= hi; ++y)
        for (int z = lo; z <= hi; ++z)
          if (rng.uniform(0, 1) < density) out.push_back({b, x * stride[0], y * stride[1], z * stride[2]});
  std::shuffle(out.begin(), out.end(), rng.engine());
  return out;
}

Array coords_array(const std::vector<Coord>& coords) {
  std::vector<std::int32_t> flat;
  flat.reserve(coords.size() * 4);
  for (const Coord& c : coords) flat.insert(flat.end(), c.begin(), c.end());
  return Array::from_vector(flat, Shape{static_cast<std::int64_t>(coords.size()), 4}, Device::cpu());
}

std::vector<Coord> coords_from_array(const Array& coords, std::int64_t rows) {
  const Array host = coords.to(Device::cpu());
  const std::int32_t* p = host.data<std::int32_t>();
  std::vector<Coord> out(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i)
    out[static_cast<std::size_t>(i)] = {p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]};
  return out;
}

std::vector<double> random_values(Rng& rng, std::size_t n) {
  std::vector<double> v(n);
  for (double& x : v) x = rng.uniform(-1, 1);
  return v;
}

Array make_array(const std::vector<double>& values, const Shape& shape, DType dtype) {
  return Array::from_vector(values, shape, Device::cpu()).astype(dtype);
}

std::vector<double> to_doubles(const Array& a) { return a.to(Device::cpu()).astype(DType::f64).to_vector<double>(); }

std::string compare_elements(const std::vector<double>& actual, const std::vector<double>& expected,
                             const std::vector<double>& magnitude, double tol, std::size_t columns) {
  std::ostringstream os;
  if (actual.size() != expected.size()) {
    os << "size " << actual.size() << " != expected " << expected.size();
    return os.str();
  }
  int failures = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double bound = tol * magnitude[i] + 1e-300;
    const double err = std::abs(actual[i] - expected[i]);
    if (!(err <= bound)) {  // NaN fails too
      if (failures < 5) {
        os << "  element (" << i / columns << ", " << i % columns << "): got " << actual[i] << ", expected "
           << expected[i] << ", |err| " << err << " > bound " << bound << "\n";
      }
      ++failures;
    }
  }
  if (failures) os << "  " << failures << " of " << actual.size() << " elements out of tolerance\n";
  return os.str();
}

double tolerance_for(DType dtype) {
  switch (dtype) {
    case DType::f64:
      return 1e-12;
    case DType::f32:
      return 1e-5;
    case DType::f16:
      return 2e-3;
    case DType::bf16:
      return 1e-2;
    default:
      return 0;
  }
}

}  // namespace lattice::testing
