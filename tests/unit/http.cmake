# The cloud HTTP layer against loopback servers the tests run themselves, and
# the AWS provider's pure parts: SigV4 (test vectors, and a cross-check against
# botocore when /usr/bin/python3 has it), the XML readers, the Query API
# encoder, settings, instance type selection.
if(TARGET pp_http AND TARGET pp_tls)
  pp_unit_test(test_http_client ${CMAKE_CURRENT_LIST_DIR}/test_http_client.c
               ${CMAKE_CURRENT_LIST_DIR}/test_http_server.c LIBS pp_http pp_tls Threads::Threads)
  pp_unit_test(test_http_retry ${CMAKE_CURRENT_LIST_DIR}/test_http_retry.c LIBS pp_http)
  # Freed blocks searched for secrets: free and realloc of our code wrapped.
  pp_unit_test(test_secret_wipe ${CMAKE_CURRENT_LIST_DIR}/test_secret_wipe.c LIBS pp_http)
  target_link_options(test_secret_wipe PRIVATE -Wl,--wrap=free -Wl,--wrap=realloc)
endif()
if(TARGET pp_aws)
  pp_unit_test(test_sigv4 ${CMAKE_CURRENT_LIST_DIR}/test_sigv4.c LIBS pp_aws PkgConfig::JANSSON)
  target_compile_definitions(test_sigv4 PRIVATE
    SIGV4_BOTOCORE_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/sigv4_botocore.py")
endif()
if(TARGET pp_aws)
  pp_unit_test(test_aws_parse ${CMAKE_CURRENT_LIST_DIR}/test_aws_parse.c LIBS pp_aws)
  target_compile_definitions(test_aws_parse PRIVATE
    AWS_CORPUS_DIR="${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/fuzz_aws_xml")
  pp_unit_test(test_aws_config ${CMAKE_CURRENT_LIST_DIR}/test_aws_config.c LIBS pp_providers pp_aws)
endif()
# The GCP provider's pure parts (settings across each other, names, the JWT).
if(TARGET pp_gcp)
  pp_unit_test(test_gcp_parts ${CMAKE_CURRENT_LIST_DIR}/test_gcp_parts.c LIBS pp_gcp
               PkgConfig::JANSSON)
endif()
# The ibmcloud provider's pure parts (profiles and modes, settings, the IAM
# request, errors, the readers on the recorded answers of the fuzz corpus).
if(TARGET pp_ibmcloud)
  pp_unit_test(test_ibmcloud_parts ${CMAKE_CURRENT_LIST_DIR}/test_ibmcloud_parts.c
               LIBS pp_ibmcloud)
  target_compile_definitions(test_ibmcloud_parts PRIVATE
    IBM_CORPUS_DIR="${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/fuzz_ibmcloud_json")
endif()
# The Azure provider's pure parts (settings, ids, errors, the readers on the fuzz corpus).
if(TARGET pp_azure)
  pp_unit_test(test_azure_parts ${CMAKE_CURRENT_LIST_DIR}/test_azure_parts.c LIBS pp_providers pp_azure)
  target_compile_definitions(test_azure_parts PRIVATE
    AZURE_CORPUS_DIR="${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/fuzz_azure_json")
endif()
