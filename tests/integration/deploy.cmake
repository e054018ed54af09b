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
