pp_fuzz_target(fuzz_ttrpc ${CMAKE_CURRENT_LIST_DIR}/fuzz_ttrpc.c)
