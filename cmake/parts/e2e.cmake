# e2e: `sluice run` end to end in a private world of network namespaces and real servers
# (tests/e2e/world.sh), once per Linux capture backend: the same suite must pass in both.
# Needs root and the tools of scripts/deps.sh; exits 77 (skipped) otherwise.
if(SLUICE_FUZZ OR NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT TARGET sluice)
  return()
endif()

foreach(mode netns divert)
  add_test(NAME e2e_run_${mode}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_run.sh $<TARGET_FILE:sluice> ${mode})
  set_tests_properties(e2e_run_${mode} PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE)
  # A root COMMAND attacks its own session (namespaces, nftables, ptrace, mounts, ...).
  add_test(NAME e2e_escape_${mode}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_escape.sh $<TARGET_FILE:sluice> ${mode})
  set_tests_properties(e2e_escape_${mode} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE)
  # A session tries every way around the capture (IP literals, forged SNI and Host, rebinding
  # answers, its own resolver, QUIC, ICMP, a static client, a daemon, the listeners themselves).
  add_test(NAME e2e_bypass_${mode}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/test_bypass.sh $<TARGET_FILE:sluice> ${mode})
  set_tests_properties(e2e_bypass_${mode} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE)
endforeach()
