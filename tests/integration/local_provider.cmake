# The local provider against the real kernel: namespaces, veth pairs and
# processes, inside a network and mount namespace the test makes for itself
# (it needs root and skips without). Stand-ins replace the agent,
# process-user-data and the forwarder.
set(LP_DIR ${CMAKE_CURRENT_LIST_DIR}/local_provider)
add_executable(pp-local-fake-forwarder ${LP_DIR}/fake_forwarder.c)
set_target_properties(pp-local-fake-forwarder PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/tests)
add_executable(test_local_provider ${LP_DIR}/test_local_provider.c)
target_link_libraries(test_local_provider PRIVATE pp_providers PkgConfig::CMOCKA)
target_compile_definitions(test_local_provider PRIVATE
  STANDIN_DIR="${LP_DIR}" FAKE_FORWARDER="$<TARGET_FILE:pp-local-fake-forwarder>")
set_target_properties(test_local_provider PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/tests)
add_dependencies(test_local_provider pp-local-fake-forwarder)
add_test(NAME local_provider COMMAND test_local_provider)
set_tests_properties(local_provider PROPERTIES LABELS integration TIMEOUT 300
                     SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
