# engine: the divert engine, the platform-neutral userspace NAT (src/divert/engine.c).
add_library(sluice_engine STATIC src/divert/engine.c)
target_link_libraries(sluice_engine PUBLIC sluice_nat sluice_packet sluice_base)
sluice_unit_test(NAME test_engine SOURCES tests/unit/test_engine.c LIBS sluice_engine)
sluice_fuzz_target(NAME fuzz_engine SOURCE tests/fuzz/fuzz_engine.c LIBS sluice_engine)
sluice_bench(NAME bench_engine SOURCES bench/bench_engine.c LIBS sluice_engine)
