# peek: the name a TCP client gives in its first bytes (TLS SNI, HTTP Host).
add_library(sluice_peek STATIC src/proxy/peek.c)
target_link_libraries(sluice_peek PUBLIC sluice_base)
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_peek.c)
  sluice_unit_test(NAME test_peek SOURCES tests/unit/test_peek.c LIBS sluice_peek)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_peek.c)
  sluice_fuzz_target(NAME fuzz_peek SOURCE tests/fuzz/fuzz_peek.c LIBS sluice_peek)
endif()
