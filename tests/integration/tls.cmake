# TLS under ttrpc on 127.0.0.1: our server and client against each other,
# against openssl s_server / s_client, and against Go's crypto/tls
# (tests/integration/tls/go, standard library only, built offline).
if(TARGET pp_tls)
  set(PP_TLS_IT_DIR ${CMAKE_CURRENT_LIST_DIR}/tls)
  add_library(pp_tls_fixture STATIC ${PP_TLS_IT_DIR}/fixture.c)
  target_link_libraries(pp_tls_fixture PUBLIC pp_tls PkgConfig::CMOCKA)
  target_include_directories(pp_tls_fixture PUBLIC ${PP_TLS_IT_DIR})

  foreach(t test_tls_ttrpc test_tls_openssl test_tls_go)
    add_executable(${t} ${PP_TLS_IT_DIR}/${t}.c)
    target_link_libraries(${t} PRIVATE pp_tls_fixture)
    set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  endforeach()

  find_program(PP_OPENSSL_CLI openssl)
  find_program(PP_TLS_GO go)
  set(PP_TLS_GO_PEER ${CMAKE_BINARY_DIR}/tests/tls-go-peer)
  if(PP_TLS_GO)
    file(GLOB PP_TLS_GO_SRCS CONFIGURE_DEPENDS ${PP_TLS_IT_DIR}/go/*.go)
    add_custom_command(
      OUTPUT ${PP_TLS_GO_PEER}
      COMMAND ${CMAKE_COMMAND} -E env GO111MODULE=off GOPATH=${CMAKE_BINARY_DIR}/gopath
              GOCACHE=${CMAKE_BINARY_DIR}/gocache GOFLAGS= ${PP_TLS_GO} build -o ${PP_TLS_GO_PEER} .
      WORKING_DIRECTORY ${PP_TLS_IT_DIR}/go
      DEPENDS ${PP_TLS_GO_SRCS}
      COMMENT "go build tls-go-peer")
    add_custom_target(tls_go_peer ALL DEPENDS ${PP_TLS_GO_PEER})
    add_dependencies(test_tls_go tls_go_peer)
  endif()

  add_test(NAME tls_ttrpc COMMAND test_tls_ttrpc)
  add_test(NAME tls_openssl COMMAND test_tls_openssl)
  add_test(NAME tls_go COMMAND test_tls_go ${PP_TLS_GO_PEER})
  set_tests_properties(tls_ttrpc tls_openssl tls_go PROPERTIES
    TIMEOUT 240 LABELS integration SKIP_RETURN_CODE 77)
endif()

# The TLS benchmark program lives with the benchmarks; it is built here,
# where pp_tls is known.
if(TARGET pp_tls)
  find_package(Threads REQUIRED)
  include(${CMAKE_SOURCE_DIR}/tests/bench/tls/bench.cmake)
endif()
