# Loadable modules (lib/util/module.h): shared objects that cloud-api-adaptor
# maps only when a setting asks for them.
#
#   pp_module(<name> [SOURCES src...] [LIBS lib...] EXPORTS symbol...)
#
# builds `<name>.so` into PP_MODULE_OUTPUT_DIR (the build tree's
# lib/peerpod, where the daemon looks first) and installs it into
# <libdir>/peerpod. The module carries its own copy of each static library in
# LIBS, pulled in for the EXPORTS symbols and hidden; it exports those symbols
# and `pp_module_abi`, nothing else. Every module is a dependency of the
# `pp_modules` target, which cloud-api-adaptor depends on.
include(GNUInstallDirs)
set(PP_MODULE_OUTPUT_DIR ${CMAKE_BINARY_DIR}/lib/peerpod)
set(PP_MODULE_INSTALL_DIR ${CMAKE_INSTALL_FULL_LIBDIR}/peerpod)
add_custom_target(pp_modules)

# The module ABI stamp, PP_MODULE_ABI in pp_module_abi.h (lib/util/module.h):
# derived at build time from the files that declare what crosses a module
# boundary (the headers they include come along), so that no one has to
# remember to bump it. A source file belongs here when the daemon and a
# module's own copy of its code both work on structures it keeps private
# (the metrics registry). The `pp_module_abi` target makes the stamp; the
# loader (peerpod) and every module depend on it.
set(PP_MODULE_BOUNDARY providers/provider.h lib/tls/tls_ops.h lib/metrics/metrics.c)
set(PP_MODULE_ABI_DIR ${CMAKE_BINARY_DIR}/generated/module_abi)
set(abi_src "")
foreach(h ${PP_MODULE_BOUNDARY})
  string(APPEND abi_src "#include \"${PROJECT_SOURCE_DIR}/${h}\"\n")
endforeach()
file(CONFIGURE OUTPUT ${PP_MODULE_ABI_DIR}/boundary.c CONTENT "${abi_src}")
add_custom_command(
  OUTPUT ${PP_MODULE_ABI_DIR}/stamp
  BYPRODUCTS ${PP_MODULE_ABI_DIR}/pp_module_abi.h
  COMMAND ${CMAKE_COMMAND} -DCC=${CMAKE_C_COMPILER} -DSRC=${PP_MODULE_ABI_DIR}/boundary.c
          -DROOT=${PROJECT_SOURCE_DIR} -DOUT=${PP_MODULE_ABI_DIR}/pp_module_abi.h
          -DDEP=${PP_MODULE_ABI_DIR}/stamp.d -DSTAMP=${PP_MODULE_ABI_DIR}/stamp
          "-DINCLUDES=${PROJECT_SOURCE_DIR}/lib;${PROJECT_SOURCE_DIR}/providers;$<TARGET_PROPERTY:PkgConfig::LIBUV,INTERFACE_INCLUDE_DIRECTORIES>"
          -P ${CMAKE_CURRENT_LIST_DIR}/module_abi.cmake
  DEPENDS ${PP_MODULE_ABI_DIR}/boundary.c ${CMAKE_CURRENT_LIST_DIR}/module_abi.cmake
  DEPFILE ${PP_MODULE_ABI_DIR}/stamp.d
  COMMENT "Module ABI stamp"
  VERBATIM)
add_custom_target(pp_module_abi DEPENDS ${PP_MODULE_ABI_DIR}/stamp)

function(pp_module name)
  cmake_parse_arguments(M "" "OUTPUT_DIRECTORY" "SOURCES;LIBS;EXPORTS" ${ARGN})
  if(NOT M_EXPORTS)
    message(FATAL_ERROR "pp_module(${name}): EXPORTS is required")
  endif()
  if(NOT M_OUTPUT_DIRECTORY)
    set(M_OUTPUT_DIRECTORY ${PP_MODULE_OUTPUT_DIR})
  endif()
  add_library(${name} MODULE ${M_SOURCES} ${PROJECT_SOURCE_DIR}/lib/util/module_abi.c)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/lib ${PP_MODULE_ABI_DIR})
  add_dependencies(${name} pp_module_abi)
  target_link_libraries(${name} PRIVATE ${M_LIBS})
  set_target_properties(${name} PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${M_OUTPUT_DIRECTORY})
  set(map ${CMAKE_CURRENT_BINARY_DIR}/${name}.map)
  list(JOIN M_EXPORTS ";\n    " syms)
  file(GENERATE OUTPUT ${map}
       CONTENT "{\n  global:\n    pp_module_abi;\n    ${syms};\n  local:\n    *;\n};\n")
  target_link_options(${name} PRIVATE -Wl,--version-script=${map})
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS ${map})
  foreach(sym ${M_EXPORTS})
    # Pulls the definition out of the static libraries.
    target_link_options(${name} PRIVATE -Wl,--undefined=${sym})
  endforeach()
  if(NOT PP_FUZZ)
    # Everything a module needs comes with it or from its shared libraries.
    target_link_options(${name} PRIVATE -Wl,--no-undefined)
  endif()
  if(M_OUTPUT_DIRECTORY STREQUAL PP_MODULE_OUTPUT_DIR)
    add_dependencies(pp_modules ${name})
    install(TARGETS ${name} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/peerpod)
  endif()
endfunction()
