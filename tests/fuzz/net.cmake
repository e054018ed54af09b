if(TARGET pp_net)
  pp_fuzz_target(fuzz_podnet ${CMAKE_CURRENT_LIST_DIR}/fuzz_podnet.c LIBS pp_net)
endif()
