# Guest components (guest/) against the strict test KBS with swtpm:
# attestation, resources, sealed secrets, faults. Skips (77) saying why
# without swtpm, tpm2-tools or python3-cryptography/python3-jwt.
if(TARGET attestation-agent AND TARGET process-user-data)
  add_executable(guest-call ${CMAKE_CURRENT_LIST_DIR}/guest/guest_call.c)
  target_link_libraries(guest-call PRIVATE pp_ttrpc_sync)
  set_target_properties(guest-call PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME guest_attest
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/guest/attest_test.sh ${CMAKE_BINARY_DIR}/bin
            $<TARGET_FILE:guest-call> /usr/bin/python3)
  set_tests_properties(guest_attest PROPERTIES TIMEOUT 300 LABELS integration SKIP_RETURN_CODE 77)
endif()
# The SEV-SNP and TDX attesters against a configfs-tsm in FUSE that signs
# reports built to the specifications.
if(TARGET attestation-agent)
  add_test(NAME guest_tee
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/guest/tee_test.sh ${CMAKE_BINARY_DIR}/bin
            $<TARGET_FILE:guest-call> /usr/bin/python3)
  set_tests_properties(guest_tee PROPERTIES TIMEOUT 300 LABELS integration SKIP_RETURN_CODE 77)
endif()
