# TLS benchmark program (run by tests/bench/tls/run.sh, not by ctest).
# Included from tests/integration/tls.cmake; built with everything else so
# that it cannot rot unnoticed.
add_executable(tls_bench ${CMAKE_CURRENT_LIST_DIR}/tls_bench.c)
target_link_libraries(tls_bench PRIVATE pp_tls Threads::Threads)
set_target_properties(tls_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/tests/bench/tls)
