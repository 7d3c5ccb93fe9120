// The one error every function of a build without CUDA raises (the *_stubs.cpp
// files stand in for src/backend/cuda, so op code needs no #ifdefs).
#pragma once

#include "lattice/core/error.hpp"

namespace lattice::cuda::stubs {

[[noreturn]] inline void not_compiled(const char* what) {
  throw NotCompiledError(lattice::detail::concat("[", what,
                                                 "] lattice was built without the CUDA backend "
                                                 "(configure with -DLATTICE_CUDA=ON or the 'cuda' preset)"));
}

}  // namespace lattice::cuda::stubs
