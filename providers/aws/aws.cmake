# The AWS (EC2) provider: included from providers/CMakeLists.txt after
# pp_http. Makes pp_aws (tests) and the module pp-provider-aws.
pkg_check_modules(PP_LIBXML2 REQUIRED IMPORTED_TARGET libxml-2.0)
find_package(OpenSSL 3.0 REQUIRED COMPONENTS Crypto)

pp_provider_module(aws
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/aws.c
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/creds.c
    ${CMAKE_CURRENT_LIST_DIR}/discover.c
    ${CMAKE_CURRENT_LIST_DIR}/ec2.c
    ${CMAKE_CURRENT_LIST_DIR}/imds.c
    ${CMAKE_CURRENT_LIST_DIR}/query.c
    ${CMAKE_CURRENT_LIST_DIR}/sigv4.c
    ${CMAKE_CURRENT_LIST_DIR}/xml.c
  LIBS pp_http pp_provider_util PkgConfig::PP_LIBXML2 PkgConfig::JANSSON
       OpenSSL::Crypto)
