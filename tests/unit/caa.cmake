# cloud-api-adaptor's own parts that need no root.
if(TARGET caa_core)
  pp_unit_test(test_caa_heap ${CMAKE_CURRENT_LIST_DIR}/test_caa_heap.c LIBS caa_core)
  # Resident memory figures mean nothing under a sanitizer's allocator.
  set_tests_properties(test_caa_heap PROPERTIES LABELS "unit;nosan")
  pp_unit_test(test_caa_config ${CMAKE_CURRENT_LIST_DIR}/test_caa_config.c LIBS caa_core)
  pp_unit_test(test_caa_state ${CMAKE_CURRENT_LIST_DIR}/test_caa_state.c LIBS caa_core)
  target_compile_definitions(test_caa_state PRIVATE
                             PP_CORPUS_DIR="${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/fuzz_caa_state")
endif()
