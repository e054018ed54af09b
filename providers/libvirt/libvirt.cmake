# The libvirt provider: included from providers/CMakeLists.txt. pp_libvirt
# holds the provider; pp_providers links it and lists it.
pkg_check_modules(PP_LIBVIRT REQUIRED IMPORTED_TARGET libvirt)
pkg_check_modules(PP_LIBARCHIVE REQUIRED IMPORTED_TARGET libarchive)
pkg_check_modules(PP_LV_LIBXML2 REQUIRED IMPORTED_TARGET libxml-2.0)

add_library(pp_libvirt STATIC
  ${CMAKE_CURRENT_LIST_DIR}/libvirt.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/domain.c
  ${CMAKE_CURRENT_LIST_DIR}/cidata.c)
target_include_directories(pp_libvirt PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../..)
target_link_libraries(pp_libvirt PUBLIC peerpod pp_provider_util PkgConfig::PP_LIBVIRT
                      PkgConfig::PP_LIBARCHIVE PkgConfig::PP_LV_LIBXML2)

target_link_libraries(pp_providers PUBLIC pp_libvirt)
target_compile_definitions(pp_providers PUBLIC PP_PROVIDER_LIBVIRT=1)
