pp_unit_test(test_ttrpc_codec ${CMAKE_CURRENT_LIST_DIR}/test_ttrpc_codec.c)
pp_unit_test(test_ttrpc_rpc ${CMAKE_CURRENT_LIST_DIR}/test_ttrpc_rpc.c)
pp_unit_test(test_util ${CMAKE_CURRENT_LIST_DIR}/test_util.c)
pp_unit_test(test_loop ${CMAKE_CURRENT_LIST_DIR}/test_loop.c)
