# The GCP (Compute Engine) provider: included from providers/CMakeLists.txt
# after pp_http. Makes pp_gcp (tests) and the module pp-provider-gcp.
find_package(OpenSSL 3.0 REQUIRED COMPONENTS Crypto)

pp_provider_module(gcp
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/gcp.c
    ${CMAKE_CURRENT_LIST_DIR}/auth.c
    ${CMAKE_CURRENT_LIST_DIR}/compute.c
    ${CMAKE_CURRENT_LIST_DIR}/config.c
    ${CMAKE_CURRENT_LIST_DIR}/errors.c
    ${CMAKE_CURRENT_LIST_DIR}/parse.c
  LIBS pp_http pp_provider_util pp_provider_names PkgConfig::JANSSON OpenSSL::Crypto)
