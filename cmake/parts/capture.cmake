# capture: how a Linux session's packets reach sluice — the session namespace shared by both
# backends (session_net.c), kernel NAT (netns.c) and the divert engine on NFQUEUE (nfqueue.c).
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(MNL REQUIRED IMPORTED_TARGET libmnl)
pkg_check_modules(NFTABLES REQUIRED IMPORTED_TARGET libnftables)

set(SLUICE_CAPTURE_SOURCES src/capture/session_net.c src/capture/netns.c)
if(EXISTS ${CMAKE_SOURCE_DIR}/src/capture/nfqueue.c)
  pkg_check_modules(NFQ REQUIRED IMPORTED_TARGET libnetfilter_queue libnftnl)
  list(APPEND SLUICE_CAPTURE_SOURCES src/capture/nfqueue.c)
endif()
add_library(sluice_capture STATIC ${SLUICE_CAPTURE_SOURCES})
find_package(Threads REQUIRED)
target_link_libraries(sluice_capture
                      PUBLIC sluice_base sluice_log sluice_loop sluice_net Threads::Threads
                      PRIVATE PkgConfig::MNL PkgConfig::NFTABLES)
if(EXISTS ${CMAKE_SOURCE_DIR}/src/capture/nfqueue.c)
  target_link_libraries(sluice_capture PUBLIC sluice_engine PRIVATE PkgConfig::NFQ)
endif()
