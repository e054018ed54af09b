# Guest components: parsers of what initdata, the KBS and the pod send.
if(TARGET guest_core)
  pp_fuzz_target(fuzz_guest_config ${CMAKE_CURRENT_LIST_DIR}/fuzz_guest_config.c LIBS guest_core)
  pp_fuzz_target(fuzz_guest_kbs ${CMAKE_CURRENT_LIST_DIR}/fuzz_guest_kbs.c LIBS guest_core)
endif()
if(TARGET guest_core)
  pp_fuzz_target(fuzz_guest_tee ${CMAKE_CURRENT_LIST_DIR}/fuzz_guest_tee.c LIBS guest_core)
endif()
