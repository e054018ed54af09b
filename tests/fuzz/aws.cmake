# The AWS provider's response readers (pp_aws comes from providers/aws).
if(TARGET pp_aws)
  pp_fuzz_target(fuzz_aws_xml ${CMAKE_CURRENT_LIST_DIR}/fuzz_aws_xml.c LIBS pp_aws)
  # ... and of what the node's instance metadata service says.
  pp_fuzz_target(fuzz_aws_imds ${CMAKE_CURRENT_LIST_DIR}/fuzz_aws_imds.c LIBS pp_aws)
endif()
# The GCP provider's response readers (pp_gcp comes from providers/gcp).
if(TARGET pp_gcp)
  pp_fuzz_target(fuzz_gcp_json ${CMAKE_CURRENT_LIST_DIR}/fuzz_gcp_json.c LIBS pp_gcp)
endif()
