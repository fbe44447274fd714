# Toolchain file: cross-compile sluice for Windows x86_64 with Debian's mingw-w64
# (gcc-mingw-w64-x86-64), and run the test executables through Wine.
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64-x86_64.cmake
# Test runs want a Wine prefix made ready first; scripts/check_windows.sh shows how
# (docs: ../shared/notes/windows-build.md).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(SLUICE_MINGW_PREFIX x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${SLUICE_MINGW_PREFIX}-gcc)
set(CMAKE_RC_COMPILER ${SLUICE_MINGW_PREFIX}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${SLUICE_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# /usr/bin/wine comes with Debian's `wine` package; with only `wine64` installed the loader is
# /usr/lib/wine/wine64. CTest puts the emulator in front of every test that runs a target.
find_program(SLUICE_WINE NAMES wine wine64 PATHS /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
if(SLUICE_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SLUICE_WINE})
endif()
