# Interop: containerd's Go ttrpc (Debian golang-github-containerd-ttrpc-dev)
# against our ttrpc library, in both directions, plus each side against
# itself as a reference. The pairings are driven by run_pair.sh.
#
# Go builds offline in GOPATH mode from the Debian source tree; without Go or
# the ttrpc sources the interop tests still register, and fail saying what to
# install, so they are never silently skipped.

set(PP_GOPATH /usr/share/gocode CACHE PATH
    "GOPATH with github.com/containerd/ttrpc (Debian golang-github-containerd-ttrpc-dev)")
find_program(PP_GO go)

set(PP_INTEROP_DIR ${CMAKE_BINARY_DIR}/tests/interop)

add_executable(c_server ${CMAKE_CURRENT_SOURCE_DIR}/c_server.c ${CMAKE_CURRENT_SOURCE_DIR}/peer.c)
add_executable(c_client ${CMAKE_CURRENT_SOURCE_DIR}/c_client.c ${CMAKE_CURRENT_SOURCE_DIR}/peer.c)
foreach(t c_server c_client)
  target_link_libraries(${t} PRIVATE peerpod)
  target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PP_INTEROP_DIR})
endforeach()

set(PP_GO_PEER ${PP_INTEROP_DIR}/ttrpc-go-peer)
set(PP_RUN_PAIR ${CMAKE_CURRENT_SOURCE_DIR}/run_pair.sh)

if(PP_GO AND EXISTS ${PP_GOPATH}/src/github.com/containerd/ttrpc/client.go)
  file(GLOB PP_GO_PEER_SRCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/go/*.go)
  add_custom_command(
    OUTPUT ${PP_GO_PEER}
    COMMAND ${CMAKE_COMMAND} -E env GOPATH=${PP_GOPATH} GO111MODULE=off
            GOCACHE=${CMAKE_BINARY_DIR}/gocache GOFLAGS= ${PP_GO} build -o ${PP_GO_PEER} .
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/go
    DEPENDS ${PP_GO_PEER_SRCS}
    COMMENT "go build ttrpc-go-peer")
  add_custom_target(ttrpc_go_peer ALL DEPENDS ${PP_GO_PEER})
  set(PP_GO_PEER_CMD ${PP_GO_PEER})
else()
  # Stands in for the Go peer so that every test below fails with the reason.
  set(PP_GO_PEER_CMD sh -c "echo 'go or containerd ttrpc sources missing (PP_GOPATH=${PP_GOPATH}): run scripts/setup.sh' >&2 && exit 1" --)
endif()

set(PP_C_SERVER $<TARGET_FILE:c_server> @SOCK@)
set(PP_C_CLIENT_CMD $<TARGET_FILE:c_client> @SOCK@)
set(PP_GO_SERVER ${PP_GO_PEER_CMD} server -socket @SOCK@)
set(PP_GO_CLIENT ${PP_GO_PEER_CMD} client -socket @SOCK@ -peer)

add_test(NAME interop_go_client_c_server COMMAND ${PP_RUN_PAIR} ${PP_C_SERVER} -- ${PP_GO_CLIENT} c)
add_test(NAME interop_c_client_go_server COMMAND ${PP_RUN_PAIR} ${PP_GO_SERVER} -- ${PP_C_CLIENT_CMD} go)
# References: each client against its own kind, so that an expectation that
# Go itself does not meet shows up here and not as a bug in ours.
add_test(NAME interop_go_client_go_server COMMAND ${PP_RUN_PAIR} ${PP_GO_SERVER} -- ${PP_GO_CLIENT} go)
add_test(NAME interop_c_client_c_server COMMAND ${PP_RUN_PAIR} ${PP_C_SERVER} -- ${PP_C_CLIENT_CMD} c)

# Deadline and concurrency checks measure time; two cores each keep the
# timings honest when ctest runs in parallel.
set_tests_properties(interop_go_client_c_server interop_c_client_go_server
                     interop_go_client_go_server interop_c_client_c_server
                     PROPERTIES TIMEOUT 180 LABELS interop PROCESSORS 2)

# The ttrpc benchmark reuses c_server and the Go settings above.
include(${PROJECT_SOURCE_DIR}/tests/bench/ttrpc/bench.cmake)
