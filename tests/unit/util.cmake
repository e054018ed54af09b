# lib/util's shared helpers: files, hex, base64, errors, cleanup types.
pp_unit_test(test_util_helpers ${CMAKE_CURRENT_LIST_DIR}/test_util_helpers.c
             LIBS PkgConfig::JANSSON)
