# Deployment: every kustomize overlay renders, deserializes into the
# Kubernetes API models with no unknown field, and names only settings the
# daemon accepts (tests/integration/deploy/check_overlays.py).
if(TARGET cloud-api-adaptor)
  add_test(NAME deploy_overlays
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/deploy/check_overlays.py
                   ${CMAKE_SOURCE_DIR}/overlays $<TARGET_FILE:cloud-api-adaptor>)
  set_tests_properties(deploy_overlays PROPERTIES LABELS integration TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
# The image run as the local overlay's DaemonSet says, with podman, through
# a pod's lifecycle and a rolling update (run_daemonset.py). Root; the
# image carries the suite's binaries, so not under a sanitizer.
if(TARGET cloud-api-adaptor AND TARGET agent-protocol-forwarder AND TARGET pp-shim)
  add_test(NAME deploy_daemonset
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/deploy/run_daemonset.py
                   ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
  set_tests_properties(deploy_daemonset PROPERTIES LABELS "e2e;nosan" TIMEOUT 900
                       SKIP_RETURN_CODE 77)
endif()
