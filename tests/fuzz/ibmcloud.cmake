# The ibmcloud provider's answer readers (pp_ibmcloud comes from providers/ibmcloud).
if(TARGET pp_ibmcloud)
  pp_fuzz_target(fuzz_ibmcloud_json ${CMAKE_CURRENT_LIST_DIR}/fuzz_ibmcloud_json.c LIBS pp_ibmcloud)
endif()
