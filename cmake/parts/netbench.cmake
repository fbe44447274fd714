# netbench: the load tool of scripts/bench_paths.sh (servers, and the clients that measure bulk
# throughput, connections/s with their latency, idle connections and DNS queries). A tool driven by
# that script, not a micro-benchmark: it goes to tools/, where scripts/bench.sh, which runs every
# binary in bench/ without arguments, does not look.
if(SLUICE_FUZZ OR NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

find_package(Threads REQUIRED)
add_executable(netbench bench/netbench.c)
target_link_libraries(netbench PRIVATE Threads::Threads)
set_target_properties(netbench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tools)
