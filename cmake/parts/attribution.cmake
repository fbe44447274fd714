# attribution: which session process owns a captured flow's socket (Linux: sock_diag and /proc).
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

add_library(sluice_attribution STATIC src/session/attribution_linux.c)
target_link_libraries(sluice_attribution PUBLIC sluice_base)

# Needs root (network and PID namespaces); exits 77 (skipped) otherwise.
sluice_unit_test(NAME test_attribution SOURCES tests/unit/test_attribution.c
                 LIBS sluice_attribution)
if(TEST test_attribution)
  set_tests_properties(test_attribution PROPERTIES SKIP_RETURN_CODE 77)
endif()
