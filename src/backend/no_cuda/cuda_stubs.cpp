// Built instead of src/backend/cuda when LATTICE_CUDA is OFF: every entry of
// backend/cuda/api.hpp reports that CUDA is not compiled in, so device-neutral
// code calls the CUDA backend unconditionally and never grows #ifdefs.
#include "backend/cuda/api.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

bool compiled() { return false; }
int device_count() { return 0; }
std::string device_name(int) { not_compiled("device_name"); }
std::string capability_tier(int) { not_compiled("capability_tier"); }
std::string runtime_version() { return "not compiled"; }
void* current_stream(int) { not_compiled("current_stream"); }
void set_current_stream(int, void*) { not_compiled("set_current_stream"); }
void* legacy_default_stream() { not_compiled("legacy_default_stream"); }
void synchronize(int) { not_compiled("synchronize"); }
void* allocate(std::size_t, int, void*) { not_compiled("allocate"); }
void deallocate(void*, int, void*) noexcept {}
void copy(void*, Device, const void*, Device, std::size_t) { not_compiled("copy"); }

void fill(Array&, double) { not_compiled("fill"); }
void astype(const Array&, Array&) { not_compiled("astype"); }
Array to_kernel_major(const Array&) { not_compiled("to_kernel_major"); }

detail::SupportParts forward_support(const CoordinateSet&, const KernelSpec&, Int3, const char* op) {
  not_compiled(op);
}
detail::SupportParts transposed_support(const CoordinateSet&, const KernelSpec&, Int3, bool, const char* op) {
  not_compiled(op);
}
detail::EdgeParts build_edges(const CoordinateSet&, const CoordinateSet&, RelationKind, const KernelSpec&,
                              const char* op) {
  not_compiled(op);
}
void check_coordinates(const CoordinateSet&, const char* op) { not_compiled(op); }
void check_unique(const CoordinateSet&, const char* op) { not_compiled(op); }

OutputCsr build_output_csr(const Relation&) { not_compiled("output_csr"); }
InputCsr build_input_csr(const Relation&) { not_compiled("input_csr"); }
KernelCsr build_kernel_csr(const Relation&) { not_compiled("kernel_csr"); }
ImplicitGemmMap build_implicit_gemm_map(const Relation&) { not_compiled("implicit_gemm_map"); }
InputGemmMap build_input_gemm_map(const Relation&) { not_compiled("input_gemm_map"); }
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation&, int) { not_compiled("sorted_implicit_gemm_map"); }

ops::ConvRoute conv_relation(const Relation&, const Array&, const Array&, const std::optional<Array>&, Array&,
                             const ConvOptions&) {
  not_compiled("conv");
}
ops::ConvRoute conv_pointwise(const Array&, const Array&, const Array&, const std::optional<Array>&, Array&,
                              const ConvOptions&) {
  not_compiled("conv");
}

void batch_norm(const Array&, const Array&, const ops::BatchNormArgs&, Array&, Array&, Array&, Array*) {
  not_compiled("batch_norm");
}
void activation(const Array&, const Array&, const ops::ActivationParams&, Array&) { not_compiled("activation"); }
void add_rows(const Array&, const Array&, const Array&, Array&) { not_compiled("add"); }
void cat_channels(const Array&, const Array&, const Array&, Array&) { not_compiled("cat"); }

void pool(const Relation&, const Array&, ops::PoolMode, Array&) { not_compiled("pool3d"); }
void global_pool(const CoordinateSet&, const Array&, ops::PoolMode, Array&, const char* op) { not_compiled(op); }
std::int64_t max_batch(const CoordinateSet&) { not_compiled("global_pool"); }

VoxelizeResult voxelize(const Array&, const std::optional<Array>&, const std::optional<Array>&,
                        const ops::VoxelizeParams&, const char*) {
  not_compiled("voxelize");
}

Event::Event(int device) : device_(device), event_(nullptr) { not_compiled("Event"); }
Event::~Event() = default;
void Event::record() { not_compiled("Event"); }
float Event::elapsed_ms(const Event&, const Event&) { not_compiled("Event"); }

}  // namespace lattice::cuda
