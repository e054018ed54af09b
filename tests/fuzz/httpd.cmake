if(TARGET pp_httpd)
  pp_fuzz_target(fuzz_httpd ${CMAKE_CURRENT_LIST_DIR}/fuzz_httpd.c LIBS pp_httpd)
endif()
