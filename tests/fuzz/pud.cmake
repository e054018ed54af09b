# process-user-data parsers of untrusted bytes; pud_core comes from
# process-user-data/.
pp_fuzz_target(fuzz_pud_iso9660 ${CMAKE_CURRENT_LIST_DIR}/fuzz_pud_iso9660.c LIBS pud_core)
pp_fuzz_target(fuzz_pud_imds ${CMAKE_CURRENT_LIST_DIR}/fuzz_pud_imds.c LIBS pud_core)
