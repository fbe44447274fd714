# base: the vocabulary every module shares (addresses, CIDRs, errno texts, logging).
add_library(sluice_base STATIC src/base/addr.c src/base/err_text.c src/base/resolv_conf.c)
sluice_unit_test(NAME test_addr SOURCES tests/unit/test_addr.c LIBS sluice_base)
sluice_unit_test(NAME test_err_text SOURCES tests/unit/test_err_text.c LIBS sluice_base)
sluice_fuzz_target(NAME fuzz_addr SOURCE tests/fuzz/fuzz_addr.c LIBS sluice_base)
sluice_unit_test(NAME test_resolv_conf SOURCES tests/unit/test_resolv_conf.c LIBS sluice_base)
sluice_fuzz_target(NAME fuzz_resolv_conf SOURCE tests/fuzz/fuzz_resolv_conf.c LIBS sluice_base)
