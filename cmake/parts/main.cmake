# The sluice program: the command line over the modules.
add_library(sluice_cli STATIC src/run_options.c)
target_link_libraries(sluice_cli PUBLIC sluice_base)
sluice_unit_test(NAME test_run_options SOURCES tests/unit/test_run_options.c LIBS sluice_cli)

if(NOT SLUICE_FUZZ)
  # `sluice run`: the session's wiring; per-platform pieces come from the libraries it links.
  add_library(sluice_run STATIC src/session/run.c)
  target_link_libraries(sluice_run PUBLIC sluice_proxy sluice_session sluice_attribution
                        sluice_capture sluice_cli)

  add_executable(sluice src/main.c)
  target_link_libraries(sluice PRIVATE sluice_run sluice_cli sluice_policy sluice_log sluice_base)
  # The program's own behaviour, as a user sees it (exit codes, messages).
  add_test(NAME cli COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/run.sh $<TARGET_FILE:sluice>
                            ${CMAKE_SOURCE_DIR}/tests/cli)
  set_tests_properties(cli PROPERTIES LABELS unit TIMEOUT 60)
endif()
