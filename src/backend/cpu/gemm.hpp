// Row-major GEMM on the CPU BLAS chosen at build time (LATTICE_CPU_BLAS):
//   C[m, n] = A[m, k] * B[k, n] + beta * C[m, n]
// float32 goes to OpenBLAS or oneDNN; float64 always to OpenBLAS (oneDNN has
// no double GEMM). docs/cpu-blas.md records which is faster here and why
// OpenBLAS is the default.
#pragma once

#include <cstdint>
#include <string>

namespace lattice::cpu {

void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float beta, float* c, std::int64_t ldc);
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const double* a, std::int64_t lda, const double* b,
          std::int64_t ldb, double beta, double* c, std::int64_t ldc);

// "OpenBLAS 0.3.21 (openmp, SKYLAKEX)" or "oneDNN 2.6.3".
std::string gemm_library();

}  // namespace lattice::cpu
