# The pod VM image (podvm/): built from Debian packages by podvm/build.sh
# (cached by content), booted with qemu, and the packer templates validated.
# Label `podvm`. The build is the fixture `podvm_image`: tests that boot the
# test image require it and read its path from
# ${CMAKE_BINARY_DIR}/podvm/image-test.path.
find_program(PP_PACKER packer)

add_test(NAME podvm_packer_validate
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/packer_test.sh ${CMAKE_SOURCE_DIR}/podvm/packer
                 ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(podvm_packer_validate PROPERTIES TIMEOUT 300 LABELS podvm
                     SKIP_RETURN_CODE 77)

if(TARGET agent-protocol-forwarder AND TARGET process-user-data AND TARGET pp-test-agent)
  add_executable(podvm-call ${CMAKE_CURRENT_LIST_DIR}/podvm_call.c)
  target_link_libraries(podvm-call PRIVATE pp_ttrpc_sync)
  set_target_properties(podvm-call PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

  add_test(NAME podvm_image_build
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/build_image.sh ${CMAKE_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR} test ${CMAKE_BINARY_DIR}/podvm/image-test.path)
  # A clean cache downloads and builds the base: minutes, not seconds.
  set_tests_properties(podvm_image_build PROPERTIES TIMEOUT 1200 LABELS podvm
                       SKIP_RETURN_CODE 77 FIXTURES_SETUP podvm_image)

  add_test(NAME podvm_image_boot
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/boot_test.sh
                   ${CMAKE_BINARY_DIR}/podvm/image-test.path $<TARGET_FILE:podvm-call>)
  set_tests_properties(podvm_image_boot PROPERTIES TIMEOUT 420 LABELS podvm
                       SKIP_RETURN_CODE 77 FIXTURES_REQUIRED podvm_image)
endif()
