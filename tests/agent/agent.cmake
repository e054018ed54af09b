# pp-test-agent: a stand-in kata agent (test_agent.c says what it answers).
# Built into bin/ next to the daemons, since demos run it too. Included by
# the fragments that need it; guarded so that several may.
if(NOT TARGET pp-test-agent)
  add_executable(pp-test-agent ${CMAKE_SOURCE_DIR}/tests/agent/test_agent.c)
  target_link_libraries(pp-test-agent PRIVATE peerpod PkgConfig::JANSSON)
endif()
