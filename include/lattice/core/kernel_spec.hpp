// Kernel geometry (SPEC §3 and Appendix A "Kernel offsets").
//
// Offsets per axis: odd size n -> -(n-1)/2 .. (n-1)/2, even size -> 0 .. n-1,
// each times the dilation. Offsets are enumerated over (x, y, z) with z
// fastest: k = (ix * Ky + iy) * Kz + iz. Offset index k is the row of the
// kernel-major weight (K, C_in, C_out).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace lattice {

// Three ints, one per axis; an int converts to the same value on all axes.
struct Int3 {
  int x = 0, y = 0, z = 0;

  constexpr Int3() = default;
  constexpr Int3(int v) : x(v), y(v), z(v) {}  // NOLINT(google-explicit-constructor)
  constexpr Int3(int x_, int y_, int z_) : x(x_), y(y_), z(z_) {}
  constexpr int operator[](int a) const { return a == 0 ? x : (a == 1 ? y : z); }
  constexpr int& operator[](int a) { return a == 0 ? x : (a == 1 ? y : z); }
  constexpr std::int64_t product() const { return std::int64_t{x} * y * z; }
  friend constexpr bool operator==(const Int3&, const Int3&) = default;
  friend constexpr auto operator<=>(const Int3&, const Int3&) = default;
  std::string str() const;  // "(x, y, z)"
};

constexpr Int3 operator*(Int3 a, Int3 b) { return {a.x * b.x, a.y * b.y, a.z * b.z}; }

struct KernelSpec {
  Int3 size{1};
  Int3 stride{1};
  Int3 padding{0};
  Int3 dilation{1};

  std::int64_t volume() const { return size.product(); }
  // Offset of kernel position k along each axis (dilation applied).
  std::vector<Int3> offsets() const;
  // Offset along one axis for index i in [0, size[a]).
  int axis_offset(int a, int i) const {
    const int n = size[a];
    const int base = (n % 2 == 1) ? i - (n - 1) / 2 : i;
    return base * dilation[a];
  }
  // Per-axis extent of the kernel footprint: (size - 1) * dilation + 1.
  Int3 extent() const;
  bool is_pointwise() const { return volume() == 1 && stride == Int3{1}; }
  bool is_centered_submanifold() const;
  // Index of the zero offset if the kernel has one (odd sizes), else -1.
  std::int64_t center_index() const;
  std::string str() const;
  friend bool operator==(const KernelSpec&, const KernelSpec&) = default;
  friend auto operator<=>(const KernelSpec&, const KernelSpec&) = default;
};

// Validates a spec for `op` (sizes, strides, dilations >= 1, padding >= 0,
// volume within limits); throws ValueError naming the argument.
void validate_kernel_spec(const KernelSpec& spec, const char* op);

}  // namespace lattice
