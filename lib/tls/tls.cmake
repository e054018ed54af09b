# TLS over libuv streams (OpenSSL, in-memory I/O) and the per-node CA:
# included from lib/CMakeLists.txt after the `peerpod` target is defined.
find_package(OpenSSL 3.0 REQUIRED COMPONENTS SSL Crypto)

add_library(pp_tls STATIC
  ${CMAKE_CURRENT_LIST_DIR}/ca.c
  ${CMAKE_CURRENT_LIST_DIR}/tls_conn.c
  ${CMAKE_CURRENT_LIST_DIR}/tls_ctx.c
  ${CMAKE_CURRENT_LIST_DIR}/tls_net.c)
target_include_directories(pp_tls PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_tls PUBLIC peerpod pp_metrics OpenSSL::SSL OpenSSL::Crypto)

# TLS on demand (tls_ops.h): the module pp-tls.so exports pp_tls and the
# initdata digest as one table; pp_tls_load finds it, without OpenSSL.
pp_module(pp-tls SOURCES ${CMAKE_CURRENT_LIST_DIR}/tls_module.c
          LIBS pp_tls pp_userdata EXPORTS pp_tls_ops)
add_library(pp_tls_load STATIC ${CMAKE_CURRENT_LIST_DIR}/tls_load.c)
target_include_directories(pp_tls_load PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_tls_load PUBLIC peerpod pp_metrics)
