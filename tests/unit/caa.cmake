# cloud-api-adaptor's own parts that need no root.
if(TARGET caa_core)
  pp_unit_test(test_caa_heap ${CMAKE_CURRENT_LIST_DIR}/test_caa_heap.c LIBS caa_core)
  # Resident memory figures mean nothing under a sanitizer's allocator.
  set_tests_properties(test_caa_heap PROPERTIES LABELS "unit;nosan")
  pp_unit_test(test_caa_config ${CMAKE_CURRENT_LIST_DIR}/test_caa_config.c LIBS caa_core)
endif()
