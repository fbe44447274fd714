# e2e: `sluice run` end to end in a private world of network namespaces and real servers
# (tests/e2e/world.sh). Needs root and the tools of scripts/deps.sh; exits 77 (skipped) otherwise.
if(SLUICE_FUZZ OR NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT TARGET sluice)
  return()
endif()

add_test(NAME e2e_run
         COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_run.sh $<TARGET_FILE:sluice> netns)
set_tests_properties(e2e_run PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
                     RUN_SERIAL TRUE)
