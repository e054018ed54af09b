# agent-protocol-forwarder: interceptor, configuration, and the forwarder
# in-process against a stand-in agent.
pp_unit_test(test_interceptor test_interceptor.c LIBS apf)
pp_unit_test(test_apf_config test_apf_config.c LIBS apf)
pp_unit_test(test_apf_agent_link test_apf_agent_link.c LIBS apf)
