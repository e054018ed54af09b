if(TARGET caa_core)
  pp_fuzz_target(fuzz_caa_state ${CMAKE_CURRENT_LIST_DIR}/fuzz_caa_state.c LIBS caa_core)
endif()
