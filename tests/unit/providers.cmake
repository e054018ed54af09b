# Providers: the registry and the local provider's pure parts (no root needed).
pp_unit_test(test_provider_local ${CMAKE_CURRENT_LIST_DIR}/test_provider_local.c
             LIBS pp_providers)
pp_unit_test(test_provider_registry ${CMAKE_CURRENT_LIST_DIR}/test_provider_registry.c
             LIBS pp_providers)
