# The libvirt provider's readers of libvirt's XML (pp_libvirt comes from
# providers/libvirt).
if(TARGET pp_libvirt)
  pp_fuzz_target(fuzz_libvirt_xml ${CMAKE_CURRENT_LIST_DIR}/fuzz_libvirt_xml.c LIBS pp_libvirt)
endif()
