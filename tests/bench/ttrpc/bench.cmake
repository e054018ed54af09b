# ttrpc benchmark programs (run by tests/bench/ttrpc/run.sh, not by ctest).
# Included from tests/interop/interop.cmake, whose C server and Go settings
# it shares; built with everything else so they cannot rot unnoticed.

set(PP_BENCH_TTRPC_DIR ${CMAKE_BINARY_DIR}/tests/bench/ttrpc)

add_executable(ttrpc_bench_client ${CMAKE_CURRENT_LIST_DIR}/bench_client.c)
target_link_libraries(ttrpc_bench_client PRIVATE peerpod)
set_target_properties(ttrpc_bench_client PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PP_BENCH_TTRPC_DIR})

if(PP_GO AND EXISTS ${PP_GOPATH}/src/github.com/containerd/ttrpc/client.go)
  set(PP_BENCH_GO ${PP_BENCH_TTRPC_DIR}/ttrpc-bench)
  file(GLOB PP_BENCH_GO_SRCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/go/*.go)
  add_custom_command(
    OUTPUT ${PP_BENCH_GO}
    COMMAND ${CMAKE_COMMAND} -E env GOPATH=${PP_GOPATH} GO111MODULE=off
            GOCACHE=${CMAKE_BINARY_DIR}/gocache GOFLAGS= ${PP_GO} build -o ${PP_BENCH_GO} .
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/go
    DEPENDS ${PP_BENCH_GO_SRCS}
    COMMENT "go build ttrpc-bench")
  add_custom_target(ttrpc_bench_go ALL DEPENDS ${PP_BENCH_GO})
endif()

add_executable(pp_bench_pingpong ${CMAKE_CURRENT_LIST_DIR}/pingpong.c)
set_target_properties(pp_bench_pingpong PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PP_BENCH_TTRPC_DIR})

# Deadline cost per call at growing numbers of calls on one connection
# (tests/bench/deadlines/run.sh).
add_executable(pp_bench_deadlines ${CMAKE_CURRENT_LIST_DIR}/deadlines.c)
target_link_libraries(pp_bench_deadlines PRIVATE peerpod)
set_target_properties(pp_bench_deadlines PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PP_BENCH_TTRPC_DIR})
