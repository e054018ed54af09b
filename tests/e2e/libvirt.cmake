# A pod VM on KVM: cloud-api-adaptor with the libvirt provider, a libvirtd of
# the test's own, and the test image from podvm/build.sh (the podvm_image
# fixture writes its path). Skipped, saying why, where /dev/kvm cannot be
# opened.
if(TARGET pp_libvirt AND TARGET cloud-api-adaptor AND TARGET pp-shim)
  add_test(NAME libvirt_kvm_lifecycle
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/libvirt_kvm.sh $<TARGET_FILE:cloud-api-adaptor>
                   $<TARGET_FILE:pp-shim> ${CMAKE_BINARY_DIR}/podvm/image-test.path
                   /usr/bin/python3)
  set_tests_properties(libvirt_kvm_lifecycle PROPERTIES LABELS "e2e;kvm;podvm" TIMEOUT 1200
                       SKIP_RETURN_CODE 77 FIXTURES_REQUIRED podvm_image RUN_SERIAL TRUE)
endif()
