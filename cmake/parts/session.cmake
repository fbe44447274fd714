# session: the Linux session — the netns capture backend and COMMAND started inside it.
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(MNL REQUIRED IMPORTED_TARGET libmnl)
pkg_check_modules(NFTABLES REQUIRED IMPORTED_TARGET libnftables)

add_library(sluice_capture STATIC src/capture/netns.c)
target_link_libraries(sluice_capture PUBLIC sluice_base sluice_log
                      PRIVATE PkgConfig::MNL PkgConfig::NFTABLES)

add_library(sluice_session STATIC src/session/linux.c)
target_link_libraries(sluice_session PUBLIC sluice_capture sluice_log)

if(NOT SLUICE_FUZZ)
  # Needs root (namespaces, nftables); exits 77 (skipped) otherwise.
  add_executable(session_probe tests/e2e/session_probe.c)
  target_link_libraries(session_probe PRIVATE sluice_session sluice_capture sluice_loop)
  add_test(NAME e2e_session
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_session.sh $<TARGET_FILE:session_probe>)
  set_tests_properties(e2e_session PROPERTIES LABELS e2e TIMEOUT 180 SKIP_RETURN_CODE 77)
endif()
