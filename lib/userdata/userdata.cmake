# User data (cloud-config builder and strict reader) and initdata: included
# from lib/CMakeLists.txt after the `peerpod` target is defined.
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

add_library(pp_userdata STATIC
  ${CMAKE_CURRENT_LIST_DIR}/base64.c
  ${CMAKE_CURRENT_LIST_DIR}/cloudconfig.c
  ${CMAKE_CURRENT_LIST_DIR}/initdata.c
  ${CMAKE_CURRENT_LIST_DIR}/utf8.c)
target_include_directories(pp_userdata PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_userdata PUBLIC peerpod ZLIB::ZLIB OpenSSL::Crypto)
