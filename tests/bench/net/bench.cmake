# Tunnel setup/teardown benchmark program (run by tests/bench/net/run.sh,
# not by ctest); included from tests/integration/net.cmake.
add_executable(pp-net-bench ${CMAKE_CURRENT_LIST_DIR}/pp_net_bench.c)
target_link_libraries(pp-net-bench PRIVATE pp_net)
set_target_properties(pp-net-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/tests/bench/net)
