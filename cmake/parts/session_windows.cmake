# session_windows: the Windows session — COMMAND's process tree in a Job Object, whose completion
# port feeds the divert engine's pid set (src/session/session_windows.h). Windows build only.
if(NOT WIN32)
  return()
endif()

add_library(sluice_session_windows STATIC src/session/windows.c)
target_link_libraries(sluice_session_windows PUBLIC sluice_log ws2_32)

if(NOT SLUICE_FUZZ)
  # COMMAND of the test: makes process trees on demand (its modes are listed at its top). The
  # test finds it beside itself (one output directory for the Windows build).
  add_executable(session_child_helper tests/windows/child_helper.c)
  target_link_options(session_child_helper PRIVATE -municode)

  add_executable(test_session_windows tests/windows/test_session_windows.c)
  target_include_directories(test_session_windows PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(test_session_windows PRIVATE sluice_session_windows shell32)
  add_dependencies(test_session_windows session_child_helper)
  add_test(NAME test_session_windows COMMAND test_session_windows)
  # Pass on the harness's last line, not only the exit status: a Wine process whose wineserver
  # died can exit 0 halfway through.
  set_tests_properties(test_session_windows PROPERTIES LABELS windows TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "[0-9]+ passed, 0 failed")
endif()
