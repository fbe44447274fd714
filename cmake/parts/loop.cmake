# loop: the event loop (timers + socket readiness) and the stderr log.

# The log needs no loop: anything may link sluice_log (and the base it takes errno texts from).
add_library(sluice_log STATIC src/base/log.c)
target_link_libraries(sluice_log PUBLIC sluice_base)
sluice_unit_test(NAME test_log SOURCES tests/unit/test_log.c LIBS sluice_log)

# The portable core plus exactly one backend, chosen here and nowhere else.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_library(sluice_loop STATIC src/base/loop.c src/base/loop_epoll.c)
  sluice_unit_test(NAME test_loop SOURCES tests/unit/test_loop.c ${SLUICE_TESTSOCK}
                   LIBS sluice_loop)
elseif(WIN32)
  # What the Winsock files share (start-up, WSA error codes); sluice_net links it too.
  add_library(sluice_wsa STATIC src/base/wsa_windows.c)
  target_link_libraries(sluice_wsa PUBLIC ws2_32)
  add_library(sluice_loop STATIC src/base/loop.c src/base/loop_wsapoll.c)
  target_link_libraries(sluice_loop PUBLIC sluice_wsa)
  sluice_unit_test(NAME test_loop SOURCES tests/unit/test_loop.c ${SLUICE_TESTSOCK}
                   LIBS sluice_loop)
  sluice_unit_test(NAME test_wsa SOURCES tests/unit/test_wsa_windows.c LIBS sluice_wsa)
else()
  message(FATAL_ERROR "sluice_loop: no event-loop backend for ${CMAKE_SYSTEM_NAME}")
endif()
