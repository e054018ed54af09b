# process-user-data: included from the top-level CMakeLists.txt (or from
# forwarder/CMakeLists.txt) after lib/, which defines pp_userdata.
# pud_core holds everything but main(), for the unit and fuzz tests.
pkg_check_modules(PUD_CURL REQUIRED IMPORTED_TARGET libcurl)
# tpm2-tss (Debian libtss2-dev) for the PCR8 extension; without it the
# program still builds and refuses to use a TPM.
pkg_check_modules(PUD_TSS2 IMPORTED_TARGET tss2-esys tss2-tctildr tss2-rc)
if(NOT PUD_TSS2_FOUND)
  message(WARNING "process-user-data: tpm2-tss not found (libtss2-dev); built without TPM "
                  "support")
endif()

add_library(pud_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/http.c
  ${CMAKE_CURRENT_LIST_DIR}/imds.c
  ${CMAKE_CURRENT_LIST_DIR}/iso9660.c
  ${CMAKE_CURRENT_LIST_DIR}/provision.c
  ${CMAKE_CURRENT_LIST_DIR}/show.c
  ${CMAKE_CURRENT_LIST_DIR}/source.c
  ${CMAKE_CURRENT_LIST_DIR}/tee.c
  ${CMAKE_CURRENT_LIST_DIR}/tpm.c)
target_include_directories(pud_core PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(pud_core PUBLIC pp_userdata peerpod PkgConfig::JANSSON PkgConfig::PUD_CURL)
if(PUD_TSS2_FOUND)
  target_compile_definitions(pud_core PRIVATE PUD_HAVE_TSS2)
  target_link_libraries(pud_core PUBLIC PkgConfig::PUD_TSS2)
endif()

add_executable(process-user-data ${CMAKE_CURRENT_LIST_DIR}/main.c)
target_link_libraries(process-user-data PRIVATE pud_core)
