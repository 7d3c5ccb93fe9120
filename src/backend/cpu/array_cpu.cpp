// Host implementations of Array fill and dtype conversion.
#include <cmath>
#include <cstring>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

void fill(Array& out, double value) {
  const std::int64_t n = out.numel();
  visit_dtype(out.dtype(), [&]<class T>() {
    T* p = static_cast<T*>(out.raw());
    T v{};
    if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>) {
      v = from_float<T>(static_cast<float>(value));
    } else {
      v = static_cast<T>(value);
    }
    std::fill(p, p + n, v);
  });
}

void astype(const Array& src, Array& dst) {
  const std::int64_t n = src.numel();
  if (n == 0) return;  // empty arrays may have no storage at all
  if (src.dtype() == dst.dtype()) {
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  visit_dtype(src.dtype(), [&]<class S>() {
    visit_dtype(dst.dtype(), [&]<class D>() {
      const S* s = static_cast<const S*>(src.raw());
      D* d = static_cast<D*>(dst.raw());
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (std::int64_t i = 0; i < n; ++i) d[i] = convert<D>(s[i]);
    });
  });
}

}  // namespace lattice::cpu
