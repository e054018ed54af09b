# process-user-data binding initdata to the TEE: PCR8 on swtpm read back with
# tpm2_pcrread, launch-bound values (SNP HOST_DATA, TDX MRCONFIGID) in a fake
# configfs-tsm tree, TEE detection. Reports itself skipped (77), saying why,
# when swtpm or tpm2-tools are missing (scripts/setup.sh installs them).
if(TARGET process-user-data)
  find_program(PP_PUD_TPM_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(PP_PUD_TPM_PYTHON NAMES python3)
  add_test(NAME pud_tpm
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pud_tpm/tpm_test.sh
            $<TARGET_FILE:process-user-data> ${PP_PUD_TPM_PYTHON})
  set_tests_properties(pud_tpm PROPERTIES TIMEOUT 120 LABELS integration SKIP_RETURN_CODE 77)
endif()
