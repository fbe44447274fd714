# session: the Linux session — COMMAND started as init of its own PID namespace, inside the
# capture's network (the capture backends are in capture.cmake).
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

add_library(sluice_session STATIC src/session/linux.c)
target_link_libraries(sluice_session PUBLIC sluice_capture sluice_log)

if(NOT SLUICE_FUZZ)
  # Needs root (namespaces, nftables); exits 77 (skipped) otherwise.
  add_executable(session_probe tests/e2e/session_probe.c)
  target_link_libraries(session_probe PRIVATE sluice_session sluice_capture sluice_loop)
  # Once per Linux capture backend: both must keep the same session guarantees.
  foreach(mode netns divert)
    add_test(NAME e2e_session_${mode}
             COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_session.sh
                     $<TARGET_FILE:session_probe> ${mode})
    set_tests_properties(e2e_session_${mode} PROPERTIES LABELS e2e TIMEOUT 180
                         SKIP_RETURN_CODE 77)
  endforeach()
endif()
