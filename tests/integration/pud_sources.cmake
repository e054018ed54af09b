# process-user-data sources: strict fake metadata services (Azure, AWS, GCP,
# IBM Cloud) in a network namespace of the test's own, real ISO9660 config
# drives, and the pod VM systemd units checked by systemd-analyze.
# Skipped (77) without root or the tools, saying why.
if(TARGET process-user-data)
  find_program(PP_PUD_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(PP_PUD_PYTHON NAMES python3)
  add_test(NAME pud_sources
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pud_sources/sources_test.sh
            $<TARGET_FILE:process-user-data> ${PP_PUD_PYTHON})
  add_test(NAME pud_systemd_units
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pud_sources/units_test.sh
            ${CMAKE_SOURCE_DIR}/podvm/systemd)
  set_tests_properties(pud_sources pud_systemd_units PROPERTIES
    TIMEOUT 180 LABELS integration SKIP_RETURN_CODE 77)
  # Its checks time the probes: no other test competing for the CPU.
  set_tests_properties(pud_sources PROPERTIES RUN_SERIAL TRUE)
endif()
