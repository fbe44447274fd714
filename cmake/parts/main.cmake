# The sluice program: the command line over the modules.
add_library(sluice_cli STATIC src/run_options.c)
target_link_libraries(sluice_cli PUBLIC sluice_base)
sluice_unit_test(NAME test_run_options SOURCES tests/unit/test_run_options.c LIBS sluice_cli)

if(NOT SLUICE_FUZZ)
  # `sluice run`: the session's wiring; per-platform pieces come from the libraries it links.
  if(WIN32 AND TARGET sluice_capture_windivert)
    add_library(sluice_run STATIC src/session/run.c src/session/run_platform_windows.c)
    target_link_libraries(sluice_run PUBLIC sluice_proxy sluice_session_windows iphlpapi
                          sluice_capture_windivert sluice_cli)
  elseif(WIN32)
    # Without the WinDivert capture backend, `run` on Windows says so and exits 125.
    add_library(sluice_run STATIC src/session/run_windows.c)
    target_link_libraries(sluice_run PUBLIC sluice_cli sluice_log)
  else()
    add_library(sluice_run STATIC src/session/run.c src/session/run_platform_linux.c)
    target_link_libraries(sluice_run PUBLIC sluice_proxy sluice_session sluice_attribution
                          sluice_capture sluice_cli)
  endif()

  if(WIN32)
    add_executable(sluice src/main.c src/main_windows.c)
    target_link_libraries(sluice PRIVATE shell32)
  else()
    add_executable(sluice src/main.c src/main_posix.c)
  endif()
  target_link_libraries(sluice PRIVATE sluice_run sluice_cli sluice_policy sluice_log sluice_base)
  # The program's own behaviour, as a user sees it (exit codes, messages); the Windows build's
  # through the emulator (Wine), plus what its `run` says.
  if(WIN32)
    if(CMAKE_CROSSCOMPILING_EMULATOR)
      add_test(NAME cli COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/windows.sh
                                "${CMAKE_CROSSCOMPILING_EMULATOR}" $<TARGET_FILE:sluice>
                                ${CMAKE_SOURCE_DIR}/tests/cli)
      set_tests_properties(cli PROPERTIES LABELS windows TIMEOUT 120)
    endif()
  else()
    add_test(NAME cli COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/run.sh $<TARGET_FILE:sluice>
                              ${CMAKE_SOURCE_DIR}/tests/cli)
    set_tests_properties(cli PROPERTIES LABELS unit TIMEOUT 60)
  endif()
endif()
