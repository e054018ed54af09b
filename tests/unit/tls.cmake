# TLS: the per-node CA, context configuration, and the handshake and filter
# over a socketpair (pp_tls from lib/tls/tls.cmake).
if(TARGET pp_tls)
  pp_unit_test(test_tls_ca ${CMAKE_CURRENT_LIST_DIR}/test_tls_ca.c LIBS pp_tls)
  pp_unit_test(test_tls_config ${CMAKE_CURRENT_LIST_DIR}/test_tls_config.c LIBS pp_tls)
  pp_unit_test(test_tls_filter ${CMAKE_CURRENT_LIST_DIR}/test_tls_filter.c LIBS pp_tls)
endif()
