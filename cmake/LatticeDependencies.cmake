# Every dependency comes from Debian packages (see scripts/bootstrap); nothing
# is downloaded at configure time.

find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)

# liblzf decodes PCD `binary_compressed` payloads.
find_path(LZF_INCLUDE_DIR lzf.h PATH_SUFFIXES liblzf REQUIRED)
find_library(LZF_LIBRARY lzf REQUIRED)
add_library(lattice_lzf INTERFACE)
target_include_directories(lattice_lzf INTERFACE ${LZF_INCLUDE_DIR})
target_link_libraries(lattice_lzf INTERFACE ${LZF_LIBRARY})

# CPU GEMM. OpenBLAS: prefer Debian's OpenMP build so that BLAS threads and our
# own OpenMP loops share one thread pool instead of oversubscribing the cores.
function(lattice_find_openblas)
  set(_multiarch_dirs /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
  find_library(LATTICE_OPENBLAS_LIBRARY NAMES openblas
    HINTS ${_multiarch_dirs}/openblas-openmp ${_multiarch_dirs}/openblas-pthread)
  find_path(LATTICE_CBLAS_INCLUDE_DIR cblas.h
    HINTS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
          /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread
          /usr/include/openblas)
  if(NOT LATTICE_OPENBLAS_LIBRARY OR NOT LATTICE_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR "OpenBLAS not found: install libopenblas-openmp-dev (scripts/bootstrap does)")
  endif()
  add_library(lattice_openblas INTERFACE)
  target_include_directories(lattice_openblas INTERFACE ${LATTICE_CBLAS_INCLUDE_DIR})
  target_link_libraries(lattice_openblas INTERFACE ${LATTICE_OPENBLAS_LIBRARY})
  message(STATUS "lattice: OpenBLAS ${LATTICE_OPENBLAS_LIBRARY}")
endfunction()
lattice_find_openblas()

# oneDNN is optional: used as the CPU GEMM when LATTICE_CPU_BLAS=onednn, and by
# bench/blas_compare to measure it against OpenBLAS.
find_package(dnnl CONFIG QUIET)
if(LATTICE_CPU_BLAS STREQUAL "onednn" AND NOT dnnl_FOUND)
  message(FATAL_ERROR "LATTICE_CPU_BLAS=onednn but oneDNN was not found (install libdnnl-dev)")
endif()
if(NOT LATTICE_CPU_BLAS MATCHES "^(openblas|onednn)$")
  message(FATAL_ERROR "LATTICE_CPU_BLAS must be openblas or onednn, got '${LATTICE_CPU_BLAS}'")
endif()

if(LATTICE_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  if(NOT GTest_FOUND)
    find_package(GTest REQUIRED)
  endif()
endif()
