# The ibmcloud provider against its strict fake IBM Cloud (fake_ibmcloud.py:
# IAM, VPC, Global Tagging): its own behaviours, one by one. What every
# provider must do is in tests/conformance/ (conformance_ibmcloud).
if(TARGET pp_ibmcloud)
  set(IBM_IT_DIR ${CMAKE_CURRENT_LIST_DIR}/ibmcloud)
  add_executable(test_ibmcloud_provider ${IBM_IT_DIR}/test_ibmcloud_provider.c)
  target_link_libraries(test_ibmcloud_provider PRIVATE pp_conformance_harness pp_providers
                        pp_ibmcloud)
  set_target_properties(test_ibmcloud_provider PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ibmcloud_provider
           COMMAND /usr/bin/python3 ${IBM_IT_DIR}/fake_ibmcloud.py --
                   $<TARGET_FILE:test_ibmcloud_provider>)
  set_tests_properties(ibmcloud_provider PROPERTIES LABELS integration TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
