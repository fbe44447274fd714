# peek: the name a TCP client gives in its first bytes (TLS SNI, HTTP Host).
add_library(sluice_peek STATIC src/proxy/peek.c)
target_link_libraries(sluice_peek PUBLIC sluice_base)
sluice_unit_test(NAME test_peek SOURCES tests/unit/test_peek.c LIBS sluice_peek)
sluice_fuzz_target(NAME fuzz_peek SOURCE tests/fuzz/fuzz_peek.c LIBS sluice_peek)
