# pp_userdata comes from lib/userdata/userdata.cmake.
if(TARGET pp_userdata)
  pp_fuzz_target(fuzz_cloudconfig ${CMAKE_CURRENT_LIST_DIR}/fuzz_cloudconfig.c LIBS pp_userdata)
  pp_fuzz_target(fuzz_initdata ${CMAKE_CURRENT_LIST_DIR}/fuzz_initdata.c LIBS pp_userdata)
endif()
