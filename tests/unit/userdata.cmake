# pp_userdata comes from lib/userdata/userdata.cmake.
if(TARGET pp_userdata)
  pp_unit_test(test_userdata_cloudconfig ${CMAKE_CURRENT_LIST_DIR}/test_userdata_cloudconfig.c
               LIBS pp_userdata)
  pp_unit_test(test_userdata_initdata ${CMAKE_CURRENT_LIST_DIR}/test_userdata_initdata.c
               LIBS pp_userdata)
endif()
