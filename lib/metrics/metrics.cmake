# Metrics registry and Prometheus text exposition: included from
# lib/CMakeLists.txt after the `peerpod` target is defined.
add_library(pp_metrics STATIC ${CMAKE_CURRENT_LIST_DIR}/metrics.c)
target_include_directories(pp_metrics PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(pp_metrics PUBLIC peerpod m)
