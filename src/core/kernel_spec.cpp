#include "lattice/core/kernel_spec.hpp"

#include "lattice/core/error.hpp"

namespace lattice {

std::string Int3::str() const { return detail::concat("(", x, ", ", y, ", ", z, ")"); }

std::vector<Int3> KernelSpec::offsets() const {
  std::vector<Int3> out;
  out.reserve(static_cast<std::size_t>(volume()));
  for (int ix = 0; ix < size.x; ++ix)
    for (int iy = 0; iy < size.y; ++iy)
      for (int iz = 0; iz < size.z; ++iz) out.push_back({axis_offset(0, ix), axis_offset(1, iy), axis_offset(2, iz)});
  return out;
}

Int3 KernelSpec::extent() const {
  return {(size.x - 1) * dilation.x + 1, (size.y - 1) * dilation.y + 1, (size.z - 1) * dilation.z + 1};
}

bool KernelSpec::is_centered_submanifold() const {
  return size.x % 2 == 1 && size.y % 2 == 1 && size.z % 2 == 1 && stride == Int3{1} && padding == Int3{0};
}

std::int64_t KernelSpec::center_index() const {
  if (size.x % 2 == 0 || size.y % 2 == 0 || size.z % 2 == 0) return -1;
  return (std::int64_t{size.x / 2} * size.y + size.y / 2) * size.z + size.z / 2;
}

std::string KernelSpec::str() const {
  return detail::concat("KernelSpec(size=", size.str(), ", stride=", stride.str(), ", padding=", padding.str(),
                        ", dilation=", dilation.str(), ")");
}

void validate_kernel_spec(const KernelSpec& spec, const char* op) {
  // Generous per-axis bounds: far beyond any real kernel, small enough that
  // offset arithmetic can never overflow int32.
  constexpr int k_max_axis = 1 << 10;
  for (int a = 0; a < 3; ++a) {
    check(spec.size[a] >= 1 && spec.size[a] <= 64, op, "kernel_size", "every entry must be in [1, 64] (got ",
          spec.size.str(), ")");
    check(spec.stride[a] >= 1 && spec.stride[a] <= k_max_axis, op, "stride", "every entry must be in [1, ", k_max_axis,
          "] (got ", spec.stride.str(), ")");
    check(spec.dilation[a] >= 1 && spec.dilation[a] <= k_max_axis, op, "dilation", "every entry must be in [1, ",
          k_max_axis, "] (got ", spec.dilation.str(), ")");
    check(spec.padding[a] >= 0 && spec.padding[a] <= k_max_axis, op, "padding", "every entry must be in [0, ",
          k_max_axis, "] (got ", spec.padding.str(), ")");
  }
  check(spec.volume() <= 4096, op, "kernel_size", "kernel volume ", spec.volume(), " exceeds 4096 (got ",
        spec.size.str(), ")");
}

}  // namespace lattice
