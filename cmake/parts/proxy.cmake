# proxy: what happens to a captured flow (TCP relay, DNS proxy, other UDP) and the socket layer
# under it, one file per platform.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_library(sluice_net STATIC src/base/net_linux.c src/base/os_posix.c)
  target_link_libraries(sluice_net PUBLIC sluice_base)
  add_library(sluice_proxy STATIC src/proxy/relay.c src/proxy/dns_proxy.c src/proxy/udp.c)
  target_link_libraries(sluice_proxy PUBLIC sluice_net sluice_loop sluice_policy sluice_audit
                        sluice_dns sluice_dnsmap sluice_peek sluice_log)
  sluice_unit_test(NAME test_relay SOURCES tests/unit/test_relay.c LIBS sluice_proxy pthread)
endif()
