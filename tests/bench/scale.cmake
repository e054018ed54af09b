# The scale benchmark's driver (tests/bench/scale/run.sh): built with
# everything else so that it cannot rot unnoticed.
if(TARGET pp_net)
  add_executable(pp-scale ${CMAKE_CURRENT_LIST_DIR}/scale/pp_scale.c)
  target_link_libraries(pp-scale PRIVATE peerpod pp_net)
  set_target_properties(pp-scale PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests/bench/scale)
endif()

# The reduced run (10 then 100 pods) as a test of correctness, not time:
# every pod starts, serves agent calls through the adaptor, serves again
# after a SIGKILL and restart, a burst of 100 StartVMs stays within the
# provider's bound, and StopVM leaves nothing behind. Needs root; skips
# otherwise.
if(TARGET pp-scale AND TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder
   AND TARGET process-user-data AND TARGET pp-test-agent)
  add_test(NAME scale_100 COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/scale/run.sh)
  set_tests_properties(scale_100 PROPERTIES TIMEOUT 1200 LABELS "e2e;scale"
                       SKIP_RETURN_CODE 77
                       ENVIRONMENT "PP_SCALE_CHECK=1;PP_BENCH_SKIP_BUILD=1;PP_BENCH_BUILD=${CMAKE_BINARY_DIR}")
endif()
