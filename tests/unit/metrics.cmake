# The metrics registry, its exposition read back by Prometheus' own parser.
if(TARGET pp_metrics)
  pp_unit_test(test_metrics ${CMAKE_CURRENT_LIST_DIR}/test_metrics.c LIBS pp_metrics)
  target_compile_definitions(test_metrics PRIVATE
    METRICS_PARSE_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/metrics_parse.py")
endif()
