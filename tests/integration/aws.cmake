# The AWS provider against a strict fake EC2 on 127.0.0.1 (fake_ec2.py, on
# Debian's python3 with python3-botocore, which checks every signature):
# the behaviours one by one, and 1000 lifecycles with injected faults.
if(TARGET pp_aws)
  set(AWS_IT_DIR ${CMAKE_CURRENT_LIST_DIR}/aws)
  foreach(t test_aws_provider test_aws_lifecycles)
    add_executable(${t} ${AWS_IT_DIR}/${t}.c ${AWS_IT_DIR}/harness.c)
    target_link_libraries(${t} PRIVATE pp_providers pp_aws PkgConfig::CMOCKA PkgConfig::JANSSON)
    set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  endforeach()
  add_test(NAME aws_provider
           COMMAND /usr/bin/python3 ${AWS_IT_DIR}/fake_ec2.py -- $<TARGET_FILE:test_aws_provider>)
  add_test(NAME aws_lifecycles
           COMMAND /usr/bin/python3 ${AWS_IT_DIR}/fake_ec2.py --
                   $<TARGET_FILE:test_aws_lifecycles> 1000)
  set_tests_properties(aws_provider aws_lifecycles PROPERTIES LABELS integration TIMEOUT 300
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
