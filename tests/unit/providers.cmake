# Providers: the registry and the local provider's pure parts (no root needed).
pp_unit_test(test_provider_local ${CMAKE_CURRENT_LIST_DIR}/test_provider_local.c
             LIBS pp_providers)
pp_unit_test(test_provider_registry ${CMAKE_CURRENT_LIST_DIR}/test_provider_registry.c
             LIBS pp_providers)

# Bad provider modules for the registry's tests, in a directory of their own.
set(PP_TEST_MODULE_DIR ${CMAKE_BINARY_DIR}/tests/modules)
pp_module(pp-provider-broken SOURCES ${CMAKE_CURRENT_LIST_DIR}/modules/broken.c
          EXPORTS pp_provider_broken_version OUTPUT_DIRECTORY ${PP_TEST_MODULE_DIR})
pp_module(pp-provider-impostor SOURCES ${CMAKE_CURRENT_LIST_DIR}/modules/impostor.c
          EXPORTS pp_provider_impostor_ops OUTPUT_DIRECTORY ${PP_TEST_MODULE_DIR})
target_include_directories(pp-provider-impostor PRIVATE ${CMAKE_SOURCE_DIR})
pp_module(pp-provider-misfit SOURCES ${CMAKE_CURRENT_LIST_DIR}/modules/misfit.c
          EXPORTS pp_provider_misfit_ops OUTPUT_DIRECTORY ${PP_TEST_MODULE_DIR})
target_include_directories(pp-provider-misfit PRIVATE ${CMAKE_SOURCE_DIR})
add_library(pp-provider-foreign MODULE ${CMAKE_CURRENT_LIST_DIR}/modules/foreign.c)
set_target_properties(pp-provider-foreign PROPERTIES PREFIX ""
                      LIBRARY_OUTPUT_DIRECTORY ${PP_TEST_MODULE_DIR})
add_dependencies(test_provider_registry pp-provider-broken pp-provider-impostor pp-provider-misfit
                 pp-provider-foreign pp_modules)
set(aws 0)
if(TARGET pp-provider-aws)
  set(aws 1)
endif()
set(libvirt 0)
if(TARGET pp-provider-libvirt)
  set(libvirt 1)
endif()
target_compile_definitions(test_provider_registry PRIVATE
  TEST_MODULE_DIR="${PP_TEST_MODULE_DIR}" MODULE_DIR="${PP_MODULE_OUTPUT_DIR}" HAVE_AWS=${aws}
  HAVE_LIBVIRT=${libvirt})
# The libvirt provider's XML, settings and config drive (no libvirt daemon).
if(TARGET pp_libvirt)
  pp_unit_test(test_libvirt_parts ${CMAKE_CURRENT_LIST_DIR}/test_libvirt_parts.c
               LIBS pp_libvirt pud_core)
endif()
