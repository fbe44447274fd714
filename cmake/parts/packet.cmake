# packet: parsing and rewriting raw IP packets for the divert engine (src/divert/packet.c).
add_library(sluice_packet STATIC src/divert/packet.c)
target_link_libraries(sluice_packet PUBLIC sluice_base)
sluice_unit_test(NAME test_packet SOURCES tests/unit/test_packet.c LIBS sluice_packet)
sluice_fuzz_target(NAME fuzz_packet SOURCE tests/fuzz/fuzz_packet.c LIBS sluice_packet)
sluice_bench(NAME bench_packet SOURCES bench/bench_packet.c LIBS sluice_packet)
