# User data (cloud-config builder and strict reader) and initdata: included
# from lib/CMakeLists.txt after the `peerpod` target is defined.
#
# pp_userdata is what programs link: pp_userdata_core and the initdata
# digest with OpenSSL (pp_initdata_digest). cloud-api-adaptor links
# pp_userdata_core alone and takes the digest from the TLS module's table,
# so that it maps OpenSSL only when it needs it (tls/tls_ops.h).
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

add_library(pp_userdata_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cloudconfig.c
  ${CMAKE_CURRENT_LIST_DIR}/cloudconfig_parse.c
  ${CMAKE_CURRENT_LIST_DIR}/initdata.c
  ${CMAKE_CURRENT_LIST_DIR}/utf8.c)
target_include_directories(pp_userdata_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_userdata_core PUBLIC peerpod ZLIB::ZLIB)

add_library(pp_initdata_digest STATIC ${CMAKE_CURRENT_LIST_DIR}/digest.c)
target_include_directories(pp_initdata_digest PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_initdata_digest PUBLIC pp_userdata_core OpenSSL::Crypto)

add_library(pp_userdata INTERFACE)
target_link_libraries(pp_userdata INTERFACE pp_userdata_core pp_initdata_digest)
