# User data end to end: process-user-data against a temporary root (digests
# against the openssl CLI, gzip from the gzip CLI), and the builder and
# reader against PyYAML and Go's gopkg.in/yaml.v2 (what upstream uses).
# Without PyYAML the interop test reports itself skipped; without Go's yaml.v2
# sources it runs the PyYAML half only and says so.
if(TARGET process-user-data AND TARGET pp_userdata)
  add_executable(ud-tool ${CMAKE_CURRENT_LIST_DIR}/userdata/ud_tool.c)
  target_link_libraries(ud-tool PRIVATE pp_userdata peerpod PkgConfig::JANSSON)
  set_target_properties(ud-tool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

  add_test(NAME userdata_pud
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/userdata/pud_test.sh
            $<TARGET_FILE:process-user-data> $<TARGET_FILE:ud-tool>)

  set(PP_GOPATH /usr/share/gocode CACHE PATH
      "GOPATH with Go sources from Debian packages (ttrpc, yaml.v2)")
  find_program(PP_GO go)
  set(PP_UD_INTEROP_ARGS $<TARGET_FILE:ud-tool>)
  if(PP_GO AND EXISTS ${PP_GOPATH}/src/gopkg.in/yaml.v2/yaml.go)
    set(PP_GOYAML ${CMAKE_BINARY_DIR}/tests/ud-goyaml)
    add_custom_command(
      OUTPUT ${PP_GOYAML}
      COMMAND ${CMAKE_COMMAND} -E env GOPATH=${PP_GOPATH} GO111MODULE=off
              GOCACHE=${CMAKE_BINARY_DIR}/gocache GOFLAGS= ${PP_GO} build -o ${PP_GOYAML} .
      WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/userdata/goyaml
      DEPENDS ${CMAKE_CURRENT_LIST_DIR}/userdata/goyaml/main.go
      COMMENT "go build ud-goyaml")
    add_custom_target(ud_goyaml ALL DEPENDS ${PP_GOYAML})
    list(APPEND PP_UD_INTEROP_ARGS --go ${PP_GOYAML})
  else()
    message(STATUS "userdata: Go or gopkg.in/yaml.v2 sources missing "
                   "(golang-gopkg-yaml.v2-dev); yaml.v2 interop not run")
  endif()
  # Debian's interpreter, where python3-yaml installs, before any other.
  find_program(PP_UD_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(PP_UD_PYTHON NAMES python3)
  add_test(NAME userdata_yaml_interop
    COMMAND ${PP_UD_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/userdata/yaml_interop.py
            ${PP_UD_INTEROP_ARGS})
  set_tests_properties(userdata_pud userdata_yaml_interop PROPERTIES
    TIMEOUT 300 LABELS integration SKIP_RETURN_CODE 77)
  set_tests_properties(userdata_pud PROPERTIES ENVIRONMENT
                       "PP_COMPAT_DATA=${PROJECT_SOURCE_DIR}/tests/compat/data")
endif()
