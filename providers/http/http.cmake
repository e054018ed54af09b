# The cloud HTTP layer (libcurl multi on the libuv loop): included from
# providers/CMakeLists.txt; every cloud provider links pp_http.
pkg_check_modules(PP_CURL REQUIRED IMPORTED_TARGET libcurl>=7.85)

add_library(pp_http STATIC
  ${CMAKE_CURRENT_LIST_DIR}/http.c
  ${CMAKE_CURRENT_LIST_DIR}/bearer.c
  ${CMAKE_CURRENT_LIST_DIR}/errors.c
  ${CMAKE_CURRENT_LIST_DIR}/retry.c
  ${CMAKE_CURRENT_LIST_DIR}/token.c)
target_include_directories(pp_http PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../..)
target_link_libraries(pp_http PUBLIC peerpod pp_metrics PkgConfig::PP_CURL)
