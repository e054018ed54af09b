# Guest components (guest/): guest_core comes from guest/CMakeLists.txt.
if(TARGET guest_core)
  foreach(t config tee)
    pp_unit_test(test_guest_${t} ${CMAKE_CURRENT_LIST_DIR}/test_guest_${t}.c LIBS guest_core)
  endforeach()
endif()
