# lib/net: pod-network JSON, pod indexes, namespaces and the libnl error
# table (the namespace cases skip without root).
if(TARGET pp_net)
  pp_unit_test(test_net_podnet ${CMAKE_CURRENT_LIST_DIR}/test_net_podnet.c LIBS pp_net)
  pp_unit_test(test_net_index ${CMAKE_CURRENT_LIST_DIR}/test_net_index.c LIBS pp_net)
  pp_unit_test(test_net_netns ${CMAKE_CURRENT_LIST_DIR}/test_net_netns.c
               LIBS pp_net PkgConfig::LIBNL_ROUTE)
endif()
