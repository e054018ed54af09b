# The libvirt provider: included from providers/CMakeLists.txt. Makes
# pp_libvirt (tests) and the module pp-provider-libvirt.
pkg_check_modules(PP_LIBVIRT REQUIRED IMPORTED_TARGET libvirt)
pkg_check_modules(PP_LIBARCHIVE REQUIRED IMPORTED_TARGET libarchive)
pkg_check_modules(PP_LV_LIBXML2 REQUIRED IMPORTED_TARGET libxml-2.0)

pp_provider_module(libvirt
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/libvirt.c
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/domain.c
    ${CMAKE_CURRENT_LIST_DIR}/cidata.c
  LIBS pp_provider_util PkgConfig::PP_LIBVIRT PkgConfig::PP_LIBARCHIVE PkgConfig::PP_LV_LIBXML2)
