# A small HTTP server on the daemon's loop (libmicrohttpd under uv_poll and
# uv_timer): probes, metrics, local REST APIs. Included from
# lib/CMakeLists.txt after the `peerpod` target is defined.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)

add_library(pp_httpd STATIC ${CMAKE_CURRENT_LIST_DIR}/httpd.c)
target_include_directories(pp_httpd PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_httpd PUBLIC peerpod PRIVATE PkgConfig::MHD)
