# policy: the policy language — parser, indexed matcher, the built-in default policy.
add_library(sluice_policy STATIC src/policy/policy.c src/policy/policy_index.c
            src/policy/policy_match.c src/policy/default_policy.c src/policy/ranges.c)
target_link_libraries(sluice_policy PUBLIC sluice_base)
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_policy.c)
  sluice_unit_test(NAME test_policy SOURCES tests/unit/test_policy.c LIBS sluice_policy)
  if(TARGET test_policy)
    # The test parses docs/examples/*.policy.
    target_compile_definitions(test_policy PRIVATE SLUICE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  endif()
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_policy.c)
  sluice_fuzz_target(NAME fuzz_policy SOURCE tests/fuzz/fuzz_policy.c LIBS sluice_policy)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/bench_policy.c)
  sluice_bench(NAME bench_policy SOURCES bench/bench_policy.c LIBS sluice_policy)
endif()
