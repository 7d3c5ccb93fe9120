# Warnings and sanitizers for lattice's own targets.
add_library(lattice_warnings INTERFACE)
target_compile_options(lattice_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                             -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
                             -Wnull-dereference -Wimplicit-fallthrough>)

if(LATTICE_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
endif()

find_program(LATTICE_CCACHE ccache)
if(LATTICE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${LATTICE_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${LATTICE_CCACHE})
endif()
