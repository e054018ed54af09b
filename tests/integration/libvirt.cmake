# The libvirt provider against libvirt's test driver (test:///default), in
# process: no daemon, no root, no KVM.
if(TARGET pp_libvirt)
  add_executable(test_libvirt_provider
                 ${CMAKE_CURRENT_LIST_DIR}/libvirt/test_libvirt_provider.c)
  target_link_libraries(test_libvirt_provider PRIVATE pp_providers pp_libvirt pud_core
                        PkgConfig::CMOCKA)
  set_target_properties(test_libvirt_provider PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME libvirt_provider COMMAND test_libvirt_provider)
  set_tests_properties(libvirt_provider PROPERTIES LABELS integration TIMEOUT 120)
endif()
