# Install rules and the CMake package: find_package(lattice) then link
# lattice::lattice.
include(CMakePackageConfigHelpers)

install(TARGETS lattice EXPORT latticeTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/lattice DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/lattice/version.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lattice)
if(TARGET lattice_cli)
  install(TARGETS lattice_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(LATTICE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lattice)
install(EXPORT latticeTargets NAMESPACE lattice:: DESTINATION ${LATTICE_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/latticeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/latticeConfig.cmake INSTALL_DESTINATION ${LATTICE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/latticeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/latticeConfig.cmake
  ${PROJECT_BINARY_DIR}/latticeConfigVersion.cmake DESTINATION ${LATTICE_CMAKE_DIR})
