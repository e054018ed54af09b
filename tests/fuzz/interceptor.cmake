# The forwarder's interceptor, fed arbitrary CreateContainer/CreateSandbox
# payloads (fuzz_interceptor.c says what it checks).
pp_fuzz_target(fuzz_interceptor fuzz_interceptor.c LIBS apf)
