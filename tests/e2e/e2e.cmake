# End-to-end: cloud-api-adaptor with the local provider, the forwarder and
# the test agent, driven like the kata shim drives them. Needs root (network
# namespaces); skips with a printed reason otherwise.
if(TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder AND TARGET process-user-data)
  function(pp_e2e_test name test)
    add_executable(${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.c ${CMAKE_CURRENT_LIST_DIR}/e2e_util.c)
    target_link_libraries(${name} PRIVATE pp_ttrpc_sync PkgConfig::CMOCKA PkgConfig::JANSSON
                          Threads::Threads)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    add_dependencies(${name} cloud-api-adaptor agent-protocol-forwarder process-user-data
                     pp-test-agent)
    add_test(NAME ${test} COMMAND ${name})
    set_tests_properties(${test} PROPERTIES TIMEOUT 600 LABELS e2e SKIP_RETURN_CODE 77
                         ENVIRONMENT "PP_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
  endfunction()
  pp_e2e_test(test_lifecycle e2e_lifecycle)
  pp_e2e_test(test_recovery e2e_recovery)
  pp_e2e_test(test_podnet e2e_podnet)
  # Mistakes, downgrades and hostile local clients (docs/design/limits.md).
  pp_e2e_test(test_hostile e2e_hostile)
  target_sources(test_hostile PRIVATE ${CMAKE_SOURCE_DIR}/tests/common/raw_peer.c)
  target_include_directories(test_hostile PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
  # Upstream's settings and readers (tests/compat).
  pp_e2e_test(test_upstream e2e_upstream)
  target_compile_definitions(test_upstream PRIVATE UPSTREAM_COMPAT="${PP_UPSTREAM_COMPAT}")
  if(TARGET upstream_compat)
    add_dependencies(test_upstream upstream_compat)
  endif()
  pp_e2e_test(test_probe e2e_probe)
  pp_e2e_test(test_startq e2e_startq)
endif()
