# process-user-data: pud_core comes from process-user-data/.
foreach(t iso9660 imds tee source)
  pp_unit_test(test_pud_${t} ${CMAKE_CURRENT_LIST_DIR}/test_pud_${t}.c LIBS pud_core)
endforeach()
