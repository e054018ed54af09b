# The Azure provider's readers of answers (pp_azure comes from providers/azure).
if(TARGET pp_azure)
  pp_fuzz_target(fuzz_azure_json ${CMAKE_CURRENT_LIST_DIR}/fuzz_azure_json.c LIBS pp_azure)
endif()
