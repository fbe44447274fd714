# loop: the event loop (timers + socket readiness) and the stderr log.

# The log needs no loop: anything may link sluice_log alone.
add_library(sluice_log STATIC src/base/log.c)
sluice_unit_test(NAME test_log SOURCES tests/unit/test_log.c LIBS sluice_log)

# The portable core plus exactly one backend, chosen here and nowhere else.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_library(sluice_loop STATIC src/base/loop.c src/base/loop_epoll.c)
  sluice_unit_test(NAME test_loop SOURCES tests/unit/test_loop.c LIBS sluice_loop)
elseif(WIN32)
  # The WSAPoll backend, src/base/loop_wsapoll.c (linking ws2_32), comes with the Windows port;
  # until then Windows builds have no sluice_loop.
else()
  message(FATAL_ERROR "sluice_loop: no event-loop backend for ${CMAKE_SYSTEM_NAME}")
endif()
