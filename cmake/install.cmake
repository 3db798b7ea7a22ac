# `cmake --install BUILD [--prefix P]`: the training and inference library `dino` (static),
# its public headers under P/include/dino_engine (core/, data/, models/, losses/, train/, with
# the same relative paths the sources use) and a CMake package, so that another project does
#   find_package(dino_engine REQUIRED)
#   target_link_libraries(app PRIVATE dino_engine::dino)
# examples/ is such a project. Included from CMakeLists.txt after the `dino` target.
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

set(DINO_INSTALL_INCLUDE_DIR ${CMAKE_INSTALL_INCLUDEDIR}/dino_engine)
set(DINO_INSTALL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dino_engine)

target_include_directories(dino INTERFACE $<INSTALL_INTERFACE:${DINO_INSTALL_INCLUDE_DIR}>)
# dino_turbojpeg carries the path of the libjpeg-turbo the build found.
install(TARGETS dino dino_turbojpeg EXPORT dino_engine_targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# core/ops_util.h is the op front-ends' internal dispatch header (it includes the CUDA
# runtime's); no public header includes it.
foreach(dir core data models losses train)
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/ DESTINATION ${DINO_INSTALL_INCLUDE_DIR}/${dir}
          FILES_MATCHING PATTERN "*.h" PATTERN "ops_util.h" EXCLUDE)
endforeach()
install(EXPORT dino_engine_targets NAMESPACE dino_engine:: DESTINATION ${DINO_INSTALL_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/dino_engineConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/dino_engineConfig.cmake
                              INSTALL_DESTINATION ${DINO_INSTALL_CMAKE_DIR})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/dino_engineConfig.cmake DESTINATION ${DINO_INSTALL_CMAKE_DIR})
