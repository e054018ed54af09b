# End-to-end: cloud-api-adaptor with the local provider, the forwarder and
# the test agent, driven like the kata shim drives them. Needs root (network
# namespaces); skips with a printed reason otherwise.
if(TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder AND TARGET process-user-data)
  add_executable(test_lifecycle ${CMAKE_CURRENT_LIST_DIR}/test_lifecycle.c
                                ${CMAKE_CURRENT_LIST_DIR}/e2e_util.c
                                ${CMAKE_SOURCE_DIR}/tests/common/sync_client.c)
  target_include_directories(test_lifecycle PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
  target_link_libraries(test_lifecycle PRIVATE peerpod PkgConfig::CMOCKA PkgConfig::JANSSON
                        Threads::Threads)
  set_target_properties(test_lifecycle PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(test_lifecycle cloud-api-adaptor agent-protocol-forwarder process-user-data
                   pp-test-agent)
  add_test(NAME e2e_lifecycle COMMAND test_lifecycle)
  set_tests_properties(e2e_lifecycle PROPERTIES TIMEOUT 600 LABELS e2e SKIP_RETURN_CODE 77
                       ENVIRONMENT "PP_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endif()

if(TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder AND TARGET process-user-data)
  add_executable(test_recovery ${CMAKE_CURRENT_LIST_DIR}/test_recovery.c
                               ${CMAKE_CURRENT_LIST_DIR}/e2e_util.c
                               ${CMAKE_SOURCE_DIR}/tests/common/sync_client.c)
  target_include_directories(test_recovery PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
  target_link_libraries(test_recovery PRIVATE peerpod PkgConfig::CMOCKA PkgConfig::JANSSON
                        Threads::Threads)
  set_target_properties(test_recovery PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(test_recovery cloud-api-adaptor agent-protocol-forwarder process-user-data
                   pp-test-agent)
  add_test(NAME e2e_recovery COMMAND test_recovery)
  set_tests_properties(e2e_recovery PROPERTIES TIMEOUT 600 LABELS e2e SKIP_RETURN_CODE 77
                       ENVIRONMENT "PP_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endif()

if(TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder AND TARGET process-user-data)
  add_executable(test_podnet ${CMAKE_CURRENT_LIST_DIR}/test_podnet.c
                             ${CMAKE_CURRENT_LIST_DIR}/e2e_util.c
                             ${CMAKE_SOURCE_DIR}/tests/common/sync_client.c)
  target_include_directories(test_podnet PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
  target_link_libraries(test_podnet PRIVATE peerpod PkgConfig::CMOCKA PkgConfig::JANSSON
                        Threads::Threads)
  set_target_properties(test_podnet PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(test_podnet cloud-api-adaptor agent-protocol-forwarder process-user-data
                   pp-test-agent)
  add_test(NAME e2e_podnet COMMAND test_podnet)
  set_tests_properties(e2e_podnet PROPERTIES TIMEOUT 300 LABELS e2e SKIP_RETURN_CODE 77
                       ENVIRONMENT "PP_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endif()
