# Pod networking in real namespaces: a node with CNI-like pod namespaces, pod
# VMs as namespaces over a veth underlay, the tunnel both ways, 50 pods,
# teardown leaving nothing, bad pod namespaces. Needs root (skips otherwise).
if(TARGET pp_net)
  add_executable(pp-net-tool ${CMAKE_CURRENT_LIST_DIR}/net/pp_net_tool.c)
  target_link_libraries(pp-net-tool PRIVATE pp_net)
  add_executable(pp-net-probe ${CMAKE_CURRENT_LIST_DIR}/net/pp_net_probe.c)
  set_target_properties(pp-net-tool pp-net-probe PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

  add_test(NAME net_tunnel
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/net/tunnel_test.sh
            $<TARGET_FILE:pp-net-tool> $<TARGET_FILE:pp-net-probe>)
  set_tests_properties(net_tunnel PROPERTIES
    TIMEOUT 600 LABELS "integration;root" SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

  # The benchmark program lives with the benchmarks; it is built here.
  include(${CMAKE_SOURCE_DIR}/tests/bench/net/bench.cmake)
endif()
