# The Azure provider against a strict fake Azure AD, IMDS and Resource
# Manager on 127.0.0.1 (fake_azure.py): the behaviours of its own, one by
# one. What every provider must do is in tests/conformance/
# (conformance_azure).
if(TARGET pp_azure)
  set(AZURE_IT_DIR ${CMAKE_CURRENT_LIST_DIR}/azure)
  add_executable(test_azure_provider ${AZURE_IT_DIR}/test_azure_provider.c)
  target_link_libraries(test_azure_provider PRIVATE pp_conformance_harness pp_providers pp_azure)
  set_target_properties(test_azure_provider PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME azure_provider
           COMMAND /usr/bin/python3 ${AZURE_IT_DIR}/fake_azure.py -- $<TARGET_FILE:test_azure_provider>)
  set_tests_properties(azure_provider PROPERTIES LABELS integration TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
