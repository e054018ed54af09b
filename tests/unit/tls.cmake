# TLS: the per-node CA, context configuration, and the handshake and filter
# over a socketpair (pp_tls from lib/tls/tls.cmake).
if(TARGET pp_tls)
  pp_unit_test(test_tls_ca ${CMAKE_CURRENT_LIST_DIR}/test_tls_ca.c LIBS pp_tls)
  pp_unit_test(test_tls_config ${CMAKE_CURRENT_LIST_DIR}/test_tls_config.c LIBS pp_tls)
  pp_unit_test(test_tls_filter ${CMAKE_CURRENT_LIST_DIR}/test_tls_filter.c LIBS pp_tls)
endif()
# The TLS module (pp-tls.so) loaded and driven through its table, as
# cloud-api-adaptor does (lib/tls/tls_ops.h): no OpenSSL linked.
if(TARGET pp_tls_load)
  pp_unit_test(test_tls_module ${CMAKE_CURRENT_LIST_DIR}/test_tls_module.c
               LIBS pp_tls_load pp_userdata_core)
  add_dependencies(test_tls_module pp_modules)
  target_compile_definitions(test_tls_module PRIVATE MODULE_DIR="${PP_MODULE_OUTPUT_DIR}")
endif()
