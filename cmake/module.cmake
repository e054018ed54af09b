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

function(pp_module name)
  cmake_parse_arguments(M "" "OUTPUT_DIRECTORY" "SOURCES;LIBS;EXPORTS" ${ARGN})
  if(NOT M_EXPORTS)
    message(FATAL_ERROR "pp_module(${name}): EXPORTS is required")
  endif()
  if(NOT M_OUTPUT_DIRECTORY)
    set(M_OUTPUT_DIRECTORY ${PP_MODULE_OUTPUT_DIR})
  endif()
  add_library(${name} MODULE ${M_SOURCES} ${PROJECT_SOURCE_DIR}/lib/util/module_abi.c)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/lib)
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
