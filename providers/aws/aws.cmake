# The AWS (EC2) provider: included from providers/CMakeLists.txt after
# pp_http. pp_aws holds the provider; pp_providers links it and lists it.
pkg_check_modules(PP_LIBXML2 REQUIRED IMPORTED_TARGET libxml-2.0)
find_package(OpenSSL 3.0 REQUIRED COMPONENTS Crypto)

add_library(pp_aws STATIC
  ${CMAKE_CURRENT_LIST_DIR}/aws.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/creds.c
  ${CMAKE_CURRENT_LIST_DIR}/ec2.c
  ${CMAKE_CURRENT_LIST_DIR}/query.c
  ${CMAKE_CURRENT_LIST_DIR}/sigv4.c
  ${CMAKE_CURRENT_LIST_DIR}/xml.c)
target_include_directories(pp_aws PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../..)
target_link_libraries(pp_aws PUBLIC peerpod pp_http pp_provider_util pp_userdata
                      PkgConfig::PP_LIBXML2 PkgConfig::JANSSON OpenSSL::Crypto)

target_link_libraries(pp_providers PUBLIC pp_aws)
target_compile_definitions(pp_providers PUBLIC PP_PROVIDER_AWS=1)
