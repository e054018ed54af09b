# The IBM Cloud VPC provider: included from providers/CMakeLists.txt after
# pp_http. Makes pp_ibmcloud (tests) and the module pp-provider-ibmcloud.
pp_provider_module(ibmcloud
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/ibmcloud.c
    ${CMAKE_CURRENT_LIST_DIR}/catalog.c
    ${CMAKE_CURRENT_LIST_DIR}/delete.c
    ${CMAKE_CURRENT_LIST_DIR}/ops.c
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/errors.c
    ${CMAKE_CURRENT_LIST_DIR}/iam.c
    ${CMAKE_CURRENT_LIST_DIR}/parse.c
  LIBS pp_http pp_provider_util pp_provider_names PkgConfig::JANSSON PkgConfig::PP_CURL
       OpenSSL::Crypto)
