# The forwarder's reader of apf.json, fed arbitrary documents
# (fuzz_apf_config.c says what it checks).
pp_fuzz_target(fuzz_apf_config fuzz_apf_config.c LIBS apf)
