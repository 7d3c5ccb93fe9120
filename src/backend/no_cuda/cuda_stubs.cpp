// Built instead of src/backend/cuda when LATTICE_CUDA is OFF: every entry of
// backend/cuda/api.hpp reports that CUDA is not compiled in, so device-neutral
// code calls the CUDA backend unconditionally and never grows #ifdefs.
#include "backend/cuda/api.hpp"

namespace lattice::cuda {

[[noreturn]] static void not_compiled(const char* what) {
  throw NotCompiledError(detail::concat("[", what,
                                        "] lattice was built without the CUDA backend "
                                        "(configure with -DLATTICE_CUDA=ON or the 'cuda' preset)"));
}

bool compiled() { return false; }
int device_count() { return 0; }
std::string device_name(int) { not_compiled("device_name"); }
std::string capability_tier(int) { not_compiled("capability_tier"); }
std::string runtime_version() { return "not compiled"; }
void* allocate(std::size_t, int) { not_compiled("allocate"); }
void deallocate(void*, std::size_t, int) {}
void copy(void*, Device, const void*, Device, std::size_t) { not_compiled("copy"); }
void fill(Array&, double) { not_compiled("fill"); }
void astype(const Array&, Array&) { not_compiled("astype"); }

}  // namespace lattice::cuda

namespace lattice::cuda {
OutputCsr build_output_csr(const Relation&) { not_compiled("output_csr"); }
InputCsr build_input_csr(const Relation&) { not_compiled("input_csr"); }
KernelCsr build_kernel_csr(const Relation&) { not_compiled("kernel_csr"); }
ImplicitGemmMap build_implicit_gemm_map(const Relation&) { not_compiled("implicit_gemm_map"); }
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation&, int) { not_compiled("sorted_implicit_gemm_map"); }
}  // namespace lattice::cuda
