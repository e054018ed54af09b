# The HTTP server on the loop (lib/httpd), with hostile clients over
# loopback TCP.
if(TARGET pp_httpd)
  pp_unit_test(test_httpd ${CMAKE_CURRENT_LIST_DIR}/test_httpd.c LIBS pp_httpd Threads::Threads)
endif()
