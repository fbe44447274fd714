# nat: the divert engine's NAT table (client side of a diverted flow -> original destination).
add_library(sluice_nat STATIC src/divert/nat_table.c)
target_link_libraries(sluice_nat PUBLIC sluice_base)
sluice_unit_test(NAME test_nat_table SOURCES tests/unit/test_nat_table.c LIBS sluice_nat)
sluice_bench(NAME bench_nat SOURCES bench/bench_nat.c LIBS sluice_nat)
