#include "backend/cpu/gemm.hpp"

#include <cstdlib>
#include <cstring>

#include <cblas.h>
#include <omp.h>

#include "backend/cpu/api.hpp"

#if defined(LATTICE_HAVE_ONEDNN)
#include <dnnl.h>
#endif

extern "C" {
// OpenBLAS extensions (declared in its cblas.h on most builds; repeated here
// so the build does not depend on which cblas.h is found first).
char* openblas_get_config(void);
char* openblas_get_corename(void);
int openblas_get_parallel(void);
void openblas_set_num_threads(int num_threads);
}

namespace lattice::cpu {

namespace {

enum class Library { openblas, onednn };

// The float32 GEMM library: the build's default (LATTICE_CPU_BLAS), or
// $LATTICE_CPU_GEMM=openblas|onednn, read once.
Library float_library() {
  static const Library lib = [] {
#if defined(LATTICE_HAVE_ONEDNN)
    if (const char* env = std::getenv("LATTICE_CPU_GEMM")) {
      if (std::strcmp(env, "openblas") == 0) return Library::openblas;
      if (std::strcmp(env, "onednn") == 0) return Library::onednn;
    }
#if defined(LATTICE_GEMM_DEFAULT_ONEDNN)
    return Library::onednn;
#endif
#endif
    return Library::openblas;
  }();
  return lib;
}

}  // namespace

void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
#if defined(LATTICE_HAVE_ONEDNN)
  if (float_library() == Library::onednn) {
    const dnnl_status_t st = dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success) throw Error(detail::concat("[gemm] dnnl_sgemm failed with status ", static_cast<int>(st)));
    return;
  }
#endif
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0f, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const double* a, std::int64_t lda, const double* b,
          std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

std::string gemm_library() {
  const int parallel = openblas_get_parallel();  // 0 serial, 1 pthreads, 2 OpenMP
  std::string openblas =
      detail::concat(openblas_get_config(), " (", parallel == 2 ? "openmp" : (parallel == 1 ? "pthreads" : "serial"),
                     ", core ", openblas_get_corename(), ")");
#if defined(LATTICE_HAVE_ONEDNN)
  if (float_library() == Library::onednn) {
    const dnnl_version_t* v = dnnl_version();
    return detail::concat("oneDNN ", v->major, ".", v->minor, ".", v->patch, " (float64: ", openblas, ")");
  }
#endif
  return openblas;
}

std::string blas_name() { return gemm_library(); }
int num_threads() { return omp_get_max_threads(); }
void set_num_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace lattice::cpu
