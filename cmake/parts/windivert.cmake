# windivert: the run-time binding of WinDivert 2.2, the fake WinDivert.dll that Windows tests load
# in its place (tests/windows/fake_windivert.c documents its script), and the binding's test.
# Windows build only. Every executable and DLL of that build lands in one directory
# (CMAKE_RUNTIME_OUTPUT_DIRECTORY in CMakeLists.txt), so a test finds WinDivert.dll beside itself.
if(NOT WIN32)
  return()
endif()

add_library(sluice_windivert STATIC src/capture/windivert_api.c)
target_link_libraries(sluice_windivert PUBLIC sluice_base)

# The test double as WinDivert.dll, and as WinDivertIncomplete.dll without WinDivertGetParam.
add_library(fake_windivert SHARED tests/windows/fake_windivert.c tests/windows/fake_windivert.def)
add_library(fake_windivert_incomplete SHARED tests/windows/fake_windivert.c
            tests/windows/fake_windivert_incomplete.def)
set_target_properties(fake_windivert PROPERTIES OUTPUT_NAME WinDivert PREFIX "")
set_target_properties(fake_windivert_incomplete PROPERTIES
                      OUTPUT_NAME WinDivertIncomplete PREFIX "")
foreach(dll fake_windivert fake_windivert_incomplete)
  target_include_directories(${dll} PRIVATE ${CMAKE_SOURCE_DIR}/tests/windows)
  target_link_libraries(${dll} PRIVATE sluice_base)
endforeach()

add_executable(test_windivert_api tests/windows/test_windivert_api.c)
target_include_directories(test_windivert_api PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit
                           ${CMAKE_SOURCE_DIR}/tests/windows)
target_link_libraries(test_windivert_api PRIVATE sluice_windivert)
add_dependencies(test_windivert_api fake_windivert fake_windivert_incomplete)
add_test(NAME test_windivert_api COMMAND test_windivert_api)
set_tests_properties(test_windivert_api PROPERTIES LABELS windows TIMEOUT 120)

# The capture backend on WinDivert (src/capture/windivert.c), and its test against the fake DLL.
add_library(sluice_capture_windivert STATIC src/capture/windivert.c)
target_link_libraries(sluice_capture_windivert PUBLIC sluice_windivert sluice_engine sluice_dnswatch sluice_net
                      sluice_loop sluice_log sluice_base ws2_32)

add_executable(test_capture_windivert tests/windows/test_capture_windivert.c)
target_include_directories(test_capture_windivert PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit
                           ${CMAKE_SOURCE_DIR}/tests/windows)
target_link_libraries(test_capture_windivert PRIVATE sluice_capture_windivert sluice_packet)
add_dependencies(test_capture_windivert fake_windivert)
add_test(NAME test_capture_windivert COMMAND test_capture_windivert)
# Pass on the harness's last line, not only the exit status (see session_windows.cmake).
set_tests_properties(test_capture_windivert PROPERTIES LABELS windows TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "[0-9]+ passed, 0 failed")
