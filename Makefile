# Top-level commands of DESIGN.md. CMake does the building; this file only names the
# build directories and the order of the steps.
#
#   make            build/sluice (debug-friendly -O2 -g build)
#   make check      install missing Debian packages, build, run unit tests plainly and under
#                   ASan+UBSan, run each fuzz target for a bounded time, then cross-build for
#                   Windows and run the Windows tests under Wine (scripts/check_windows.sh)
#   make bench      optimised build, then the benchmark table
#   make demo       a session in a private test world: allowed and denied connections, audit trail
#   make windows    mingw-w64 cross build: build-win/sluice.exe and the Windows tests

JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
CTEST  ?= ctest
CTEST_FLAGS = --output-on-failure --no-tests=error -j$(JOBS)

.PHONY: all sluice check deps deps-windows unit asan fuzz bench demo windows clean

all: sluice

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

sluice: build/CMakeCache.txt
	$(CMAKE) --build build -j$(JOBS)

deps:
	@scripts/deps.sh

# Unit tests, and the end-to-end tests in private network namespaces (root only).
unit: deps sluice
	$(CTEST) --test-dir build -L '^(unit|e2e)$$' $(CTEST_FLAGS)

build-asan/CMakeCache.txt:
	CC=clang $(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null

asan: deps build-asan/CMakeCache.txt
	$(CMAKE) --build build-asan -j$(JOBS)
	$(CTEST) --test-dir build-asan -L '^(unit|e2e)$$' $(CTEST_FLAGS)

build-fuzz/CMakeCache.txt:
	CC=clang $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON >/dev/null

# Fuzz targets share two cores: run them one at a time so each gets its full budget.
fuzz: deps build-fuzz/CMakeCache.txt
	$(CMAKE) --build build-fuzz -j$(JOBS)
	$(CTEST) --test-dir build-fuzz -L fuzz --output-on-failure --no-tests=error -j1

check: deps
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory fuzz
	@JOBS=$(JOBS) scripts/check_windows.sh

# The optimised build the benchmarks run; the table's JSON copy goes to build/bench/results.json.
# BENCH_SECONDS, BENCH_REPEAT, BENCH_PATHS, ... tune scripts/bench_paths.sh (see its header).
BENCH_BUILD ?= build-release

$(BENCH_BUILD)/CMakeCache.txt:
	$(CMAKE) -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

bench: deps $(BENCH_BUILD)/CMakeCache.txt
	@scripts/deps.sh bench
	$(CMAKE) --build $(BENCH_BUILD) -j$(JOBS)
	@scripts/bench.sh $(BENCH_BUILD)
	@echo
	@scripts/bench_paths.sh $(BENCH_BUILD)/sluice $(BENCH_BUILD)/tools/netbench || [ $$? = 77 ]

demo: deps sluice
	@scripts/demo.sh build/sluice

deps-windows:
	@scripts/deps.sh windows

build-win/CMakeCache.txt: | deps-windows
	$(CMAKE) -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64-x86_64.cmake \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

windows: deps-windows build-win/CMakeCache.txt
	$(CMAKE) --build build-win -j$(JOBS)

clean:
	rm -rf build build-asan build-fuzz build-release build-win
