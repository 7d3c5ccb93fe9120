# Every dependency comes from Debian packages (see scripts/bootstrap); nothing
# is downloaded at configure time. LATTICE_DEPS_ROOT names an extra root to
# search (the GPU machine has no apt: scripts/gpu-check unpacks the same
# Debian packages there and points this at them).
set(LATTICE_DEPS_ROOT "" CACHE PATH "Extra prefix holding unpacked dependency packages")
set(_lattice_multiarch ${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT _lattice_multiarch)
  set(_lattice_multiarch x86_64-linux-gnu)
endif()
set(_lattice_roots /)
if(LATTICE_DEPS_ROOT)
  list(PREPEND _lattice_roots ${LATTICE_DEPS_ROOT})
endif()
set(_lattice_lib_hints)
set(_lattice_inc_hints)
foreach(r IN LISTS _lattice_roots)
  list(APPEND _lattice_lib_hints ${r}/usr/lib/${_lattice_multiarch})
  list(APPEND _lattice_inc_hints ${r}/usr/include)
endforeach()

find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)

# liblzf decodes PCD `binary_compressed` payloads.
find_path(LZF_INCLUDE_DIR lzf.h HINTS ${_lattice_inc_hints} PATH_SUFFIXES liblzf REQUIRED)
find_library(LZF_LIBRARY NAMES lzf liblzf.so.1 HINTS ${_lattice_lib_hints} REQUIRED)
add_library(lattice_lzf INTERFACE)
target_include_directories(lattice_lzf INTERFACE ${LZF_INCLUDE_DIR})
target_link_libraries(lattice_lzf INTERFACE ${LZF_LIBRARY})

# CPU GEMM. OpenBLAS: prefer Debian's OpenMP build so that BLAS threads and our
# own OpenMP loops share one thread pool instead of oversubscribing the cores.
function(lattice_find_openblas)
  set(_libs)
  set(_incs)
  foreach(r IN LISTS _lattice_roots)
    list(APPEND _libs ${r}/usr/lib/${_lattice_multiarch}/openblas-openmp ${r}/usr/lib/${_lattice_multiarch}/openblas-pthread)
    list(APPEND _incs ${r}/usr/include/${_lattice_multiarch}/openblas-openmp
                      ${r}/usr/include/${_lattice_multiarch}/openblas-pthread ${r}/usr/include/openblas)
  endforeach()
  find_library(LATTICE_OPENBLAS_LIBRARY NAMES openblas HINTS ${_libs} NO_DEFAULT_PATH)
  find_library(LATTICE_OPENBLAS_LIBRARY NAMES openblas)
  find_path(LATTICE_CBLAS_INCLUDE_DIR cblas.h HINTS ${_incs} NO_DEFAULT_PATH)
  find_path(LATTICE_CBLAS_INCLUDE_DIR cblas.h)
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

# GoogleTest: the installed package, or its sources (Debian's googletest
# package ships them in /usr/src/googletest) built alongside.
set(LATTICE_GTEST_SOURCE_DIR "" CACHE PATH "GoogleTest sources to build when no installed GTest is found")
if(LATTICE_BUILD_TESTS)
  if(NOT LATTICE_GTEST_SOURCE_DIR)
    find_package(GTest CONFIG QUIET)
  endif()
  if(NOT GTest_FOUND AND NOT TARGET GTest::gtest)
    if(NOT LATTICE_GTEST_SOURCE_DIR AND EXISTS /usr/src/googletest/CMakeLists.txt)
      set(LATTICE_GTEST_SOURCE_DIR /usr/src/googletest)
    endif()
    if(LATTICE_GTEST_SOURCE_DIR)
      set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
      set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
      add_subdirectory(${LATTICE_GTEST_SOURCE_DIR} ${PROJECT_BINARY_DIR}/_googletest EXCLUDE_FROM_ALL)
      add_library(GTest::gtest ALIAS gtest)
      add_library(GTest::gtest_main ALIAS gtest_main)
    else()
      find_package(GTest REQUIRED)
    endif()
  endif()
endif()
