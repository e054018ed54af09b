# The Azure provider: included from providers/CMakeLists.txt after pp_http.
# Makes pp_azure (tests) and the module pp-provider-azure.
find_package(OpenSSL 3.0 REQUIRED COMPONENTS Crypto)

pp_provider_module(azure
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/azure.c
    ${CMAKE_CURRENT_LIST_DIR}/arm.c
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/creds.c
    ${CMAKE_CURRENT_LIST_DIR}/parse.c
  LIBS pp_http pp_provider_util PkgConfig::JANSSON OpenSSL::Crypto)
