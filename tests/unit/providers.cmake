# Providers: the registry and the local provider's pure parts (no root needed).
pp_unit_test(test_provider_local ${CMAKE_CURRENT_LIST_DIR}/test_provider_local.c
             LIBS pp_providers)
pp_unit_test(test_provider_registry ${CMAKE_CURRENT_LIST_DIR}/test_provider_registry.c
             LIBS pp_providers)
# The libvirt provider's XML, settings and config drive (no libvirt daemon).
if(TARGET pp_libvirt)
  pp_unit_test(test_libvirt_parts ${CMAKE_CURRENT_LIST_DIR}/test_libvirt_parts.c
               LIBS pp_libvirt pud_core)
endif()
