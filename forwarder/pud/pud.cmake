# process-user-data: included from the top-level CMakeLists.txt (or from
# forwarder/CMakeLists.txt) after lib/, which defines pp_userdata.
add_executable(process-user-data
  ${CMAKE_CURRENT_LIST_DIR}/main.c
  ${CMAKE_CURRENT_LIST_DIR}/provision.c
  ${CMAKE_CURRENT_LIST_DIR}/source.c)
target_link_libraries(process-user-data PRIVATE pp_userdata peerpod)
