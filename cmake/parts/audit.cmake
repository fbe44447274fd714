# audit: the JSON Lines audit trail and the JSON writer that escapes what the network names.
add_library(sluice_audit STATIC src/audit/json.c src/audit/audit.c)
target_link_libraries(sluice_audit PUBLIC sluice_base)
sluice_unit_test(NAME test_json SOURCES tests/unit/test_json.c tests/unit/json_validate.c
                 LIBS sluice_audit)
sluice_unit_test(NAME test_audit SOURCES tests/unit/test_audit.c tests/unit/json_validate.c
                 LIBS sluice_audit)
sluice_fuzz_target(NAME fuzz_json SOURCE tests/fuzz/fuzz_json.c LIBS sluice_audit)
