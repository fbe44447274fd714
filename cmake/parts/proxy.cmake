# proxy: what happens to a captured flow (TCP relay, DNS proxy, other UDP) and the socket layer
# under it, one file per platform.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_library(sluice_net STATIC src/base/net_linux.c src/base/os_posix.c)
  target_link_libraries(sluice_net PUBLIC sluice_base)
elseif(WIN32)
  add_library(sluice_net STATIC src/base/net_windows.c src/base/os_windows.c)
  target_link_libraries(sluice_net PUBLIC sluice_base sluice_wsa bcrypt)
endif()

if(TARGET sluice_net)
  add_library(sluice_proxy STATIC src/proxy/relay.c src/proxy/dns_proxy.c src/proxy/udp.c)
  target_link_libraries(sluice_proxy PUBLIC sluice_net sluice_loop sluice_policy sluice_audit
                        sluice_dns sluice_dnsmap sluice_peek sluice_log)
  sluice_unit_test(NAME test_relay SOURCES tests/unit/test_relay.c ${SLUICE_TESTSOCK}
                   LIBS sluice_proxy pthread)
  sluice_unit_test(NAME test_dns_proxy SOURCES tests/unit/test_dns_proxy.c ${SLUICE_TESTSOCK}
                   LIBS sluice_proxy)
  sluice_unit_test(NAME test_os SOURCES tests/unit/test_os.c LIBS sluice_net)
endif()
