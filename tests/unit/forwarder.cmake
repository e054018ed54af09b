# agent-protocol-forwarder: interceptor, configuration, and the forwarder
# in-process against a stand-in agent.
pp_unit_test(test_interceptor test_interceptor.c LIBS apf)
pp_unit_test(test_apf_config test_apf_config.c LIBS apf)
# apf.json as upstream's daemon writes it (tests/compat/data, from upstream's shapes).
target_compile_definitions(test_apf_config PRIVATE
  UPSTREAM_APF="${PROJECT_SOURCE_DIR}/tests/compat/data/upstream-apf.json")
