# dns: the DNS message codec (proxy side) and the session's DNS map (address -> names).
add_library(sluice_dns STATIC src/proxy/dns_msg.c)
target_link_libraries(sluice_dns PUBLIC sluice_base)
add_library(sluice_dnsmap STATIC src/policy/dns_map.c)
target_link_libraries(sluice_dnsmap PUBLIC sluice_dns sluice_base)
sluice_unit_test(NAME test_dns_msg SOURCES tests/unit/test_dns_msg.c LIBS sluice_dns)
sluice_unit_test(NAME test_dns_map SOURCES tests/unit/test_dns_map.c LIBS sluice_dnsmap)
sluice_fuzz_target(NAME fuzz_dns SOURCE tests/fuzz/fuzz_dns.c LIBS sluice_dnsmap)
