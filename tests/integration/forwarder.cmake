# agent-protocol-forwarder end to end: the daemon between our ttrpc client
# and pp-test-agent, over 127.0.0.1 and a unix socket in a temporary dir.

add_executable(test_apf_integration forwarder/test_apf_integration.c)
target_link_libraries(test_apf_integration PRIVATE apf PkgConfig::CMOCKA PkgConfig::JANSSON)
set_target_properties(test_apf_integration PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                      ${CMAKE_BINARY_DIR}/tests)
add_dependencies(test_apf_integration agent-protocol-forwarder pp-test-agent)
add_test(NAME apf_integration
         COMMAND test_apf_integration $<TARGET_FILE:agent-protocol-forwarder>
                 $<TARGET_FILE:pp-test-agent>)
set_tests_properties(apf_integration PROPERTIES TIMEOUT 300 LABELS integration)
