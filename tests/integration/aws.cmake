# The AWS provider against a strict fake EC2 on 127.0.0.1 (fake_ec2.py, on
# Debian's python3 with python3-botocore, which checks every signature):
# the behaviours of its own, one by one. What every provider must do is in
# tests/conformance/ (conformance_aws).
if(TARGET pp_aws)
  set(AWS_IT_DIR ${CMAKE_CURRENT_LIST_DIR}/aws)
  add_executable(test_aws_provider ${AWS_IT_DIR}/test_aws_provider.c ${AWS_IT_DIR}/aws_harness.c)
  target_include_directories(test_aws_provider PRIVATE ${AWS_IT_DIR})
  target_link_libraries(test_aws_provider PRIVATE pp_conformance_harness pp_providers pp_aws)
  set_target_properties(test_aws_provider PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME aws_provider
           COMMAND /usr/bin/python3 ${AWS_IT_DIR}/fake_ec2.py -- $<TARGET_FILE:test_aws_provider>)
  set_tests_properties(aws_provider PROPERTIES LABELS integration TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
# cloud-api-adaptor itself with CLOUD_PROVIDER=aws, driven by pp-shim.
if(TARGET pp_aws AND TARGET cloud-api-adaptor AND TARGET pp-shim)
  add_test(NAME aws_caa_startvm
           COMMAND /usr/bin/python3 ${AWS_IT_DIR}/fake_ec2.py -- bash ${AWS_IT_DIR}/caa_aws.sh
                   $<TARGET_FILE:cloud-api-adaptor> $<TARGET_FILE:pp-shim>)
  set_tests_properties(aws_caa_startvm PROPERTIES LABELS integration TIMEOUT 120
                       SKIP_RETURN_CODE 77)
endif()
