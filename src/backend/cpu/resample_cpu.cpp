// CPU kernels of the resample family: the normalized-convolution combine,
// weight squaring, and trilinear upsampling (SPEC Appendix A "Pooling").
#include <cmath>
#include <cstdlib>

#include "backend/cpu/api.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/trilinear_axis.hpp"
#include "lattice/core/error.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cpu {

void square_weight(const Array& w, Array& out) {
  visit_float(w.dtype(), [&]<class T>() {
    const T* src = w.data<T>();
    const std::int64_t n = w.numel();
    if (out.dtype() == DType::f64) {
      double* dst = out.data<double>();
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(load(src[i]));
        dst[i] = v * v;
      }
    } else {
      float* dst = out.data<float>();
      for (std::int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(load(src[i]));
        dst[i] = v * v;
      }
    }
  });
}

void normalized_combine(const Array& num, const Array& den, const std::optional<Array>& bias, double eps,
                        std::int64_t rows, Array& out) {
  visit_float(num.dtype(), [&]<class T>() {
    // The denominator's type is the compute type: float32, or float64 for float64 features.
    using A = compute_t<T>;
    const std::int64_t c = num.dim(1);
    const T* n = num.data<T>();
    const A* d = den.data<A>();
    const T* b = bias ? bias->data<T>() : nullptr;
    const A e = static_cast<A>(eps);
    T* y = out.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < c; ++j) {
        const std::int64_t i = r * c + j;
        A v = load(n[i]) / std::sqrt(d[i] + e);
        if (b != nullptr) v += load(b[j]);
        y[i] = store<T>(v);
      }
    }
    std::fill(y + rows * c, y + out.dim(0) * c, store<T>(0.0f));
  });
}

Array upsample_children(const CoordinateSet& coarse, Int3 ratio, Int3 fine_stride, const char* op) {
  const std::int64_t rows = coarse.rows();
  const std::int64_t per = std::int64_t{ratio.x} * ratio.y * ratio.z;
  Array out = Array::empty(Shape{rows * per, 4}, DType::i32, Device::cpu());
  const std::int32_t* c = coarse.coords().data<std::int32_t>();
  std::int32_t* o = out.data<std::int32_t>();
  const Int3 s = coarse.stride();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int32_t* u = c + 4 * r;
    std::int64_t k = r * per;
    for (int dx = 0; dx < ratio.x; ++dx) {
      for (int dy = 0; dy < ratio.y; ++dy) {
        for (int dz = 0; dz < ratio.z; ++dz, ++k) {
          // Logical fine coordinate u * r + d (u logical at the coarse stride).
          const std::int64_t fx = std::int64_t{u[1] / s.x} * ratio.x + dx;
          const std::int64_t fy = std::int64_t{u[2] / s.y} * ratio.y + dy;
          const std::int64_t fz = std::int64_t{u[3] / s.z} * ratio.z + dz;
          check(detail::key_fits(u[0], fx, fy, fz), op, "x", "child (", fx, ", ", fy, ", ", fz, ") of row ", r,
                " leaves the coordinate key range of +-2^17 lattice steps");
          std::int32_t* row = o + 4 * k;
          row[0] = u[0];
          row[1] = static_cast<std::int32_t>(fx * fine_stride.x);
          row[2] = static_cast<std::int32_t>(fy * fine_stride.y);
          row[3] = static_cast<std::int32_t>(fz * fine_stride.z);
        }
      }
    }
  }
  return out;
}

namespace {

template <class T>
void upsample_typed(const CoordinateSet& coarse, const Array& feats, const CoordinateSet& fine, Int3 ratio, Array& out,
                    const char* op) {
  using A = compute_t<T>;
  const CoordHashTable& table = coord_index(coarse, op);
  const std::int64_t n_fine = fine.rows();
  const std::int64_t c = feats.dim(1);
  const std::int32_t* fc = fine.coords().data<std::int32_t>();
  const Int3 fs = fine.stride();
  const T* x = feats.data<T>();
  T* y = out.data<T>();
#pragma omp parallel
  {
    std::vector<A> acc(static_cast<std::size_t>(c));
#pragma omp for schedule(dynamic, 256)
    for (std::int64_t o = 0; o < n_fine; ++o) {
      const std::int32_t* f = fc + 4 * o;
      std::int64_t ux[2], uy[2], uz[2];
      A wx[2], wy[2], wz[2];
      const int nx = axis_candidates<A>(f[1] / fs.x, ratio.x, ux, wx);
      const int ny = axis_candidates<A>(f[2] / fs.y, ratio.y, uy, wy);
      const int nz = axis_candidates<A>(f[3] / fs.z, ratio.z, uz, wz);
      std::fill(acc.begin(), acc.end(), A{0});
      A total = A{0};
      for (int a = 0; a < nx; ++a) {
        for (int b = 0; b < ny; ++b) {
          for (int d = 0; d < nz; ++d) {
            const std::int32_t i = lookup(table, f[0], ux[a], uy[b], uz[d]);
            if (i < 0) continue;
            const A w = wx[a] * wy[b] * wz[d];
            total += w;
            const T* xi = x + std::int64_t{i} * c;
            for (std::int64_t j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += w * load(xi[j]);
          }
        }
      }
      T* yo = y + o * c;
      for (std::int64_t j = 0; j < c; ++j) {
        yo[j] = store<T>(total > A{0} ? acc[static_cast<std::size_t>(j)] / total : A{0});
      }
    }
  }
  std::fill(y + n_fine * c, y + out.dim(0) * c, store<T>(0.0f));
}

}  // namespace

void trilinear_upsample(const CoordinateSet& coarse, const Array& feats, const CoordinateSet& fine, Int3 ratio,
                        Array& out, const char* op) {
  visit_float(feats.dtype(), [&]<class T>() { upsample_typed<T>(coarse, feats, fine, ratio, out, op); });
}

}  // namespace lattice::cpu
