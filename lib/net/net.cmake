# Pod networking (netns, pod-network JSON, pod index, VXLAN tunnel, tc,
# nftables conntrack exemption): included from lib/CMakeLists.txt after the
# `peerpod` target is defined.
pkg_check_modules(LIBNL_ROUTE REQUIRED IMPORTED_TARGET GLOBAL libnl-route-3.0)
pkg_check_modules(LIBNFTNL REQUIRED IMPORTED_TARGET libnftnl)
pkg_check_modules(LIBMNL REQUIRED IMPORTED_TARGET libmnl)
find_package(Threads REQUIRED)

add_library(pp_net STATIC
  ${CMAKE_CURRENT_LIST_DIR}/inspect.c
  ${CMAKE_CURRENT_LIST_DIR}/link.c
  ${CMAKE_CURRENT_LIST_DIR}/netns.c
  ${CMAKE_CURRENT_LIST_DIR}/nft.c
  ${CMAKE_CURRENT_LIST_DIR}/nl.c
  ${CMAKE_CURRENT_LIST_DIR}/podindex.c
  ${CMAKE_CURRENT_LIST_DIR}/podnet.c
  ${CMAKE_CURRENT_LIST_DIR}/tc.c
  ${CMAKE_CURRENT_LIST_DIR}/tunnel.c
  ${CMAKE_CURRENT_LIST_DIR}/veth.c)
target_include_directories(pp_net PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_net
  PUBLIC peerpod PkgConfig::JANSSON
  PRIVATE PkgConfig::LIBNL_ROUTE PkgConfig::LIBNFTNL PkgConfig::LIBMNL Threads::Threads)
