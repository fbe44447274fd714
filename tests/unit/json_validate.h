/* json_validate.h — a strict JSON checker for tests of everything that writes JSON. */
#ifndef SLUICE_TESTS_JSON_VALIDATE_H
#define SLUICE_TESTS_JSON_VALIDATE_H

#include <stddef.h>

/* Checks that text[0..len) is exactly one JSON value by RFC 8259 with nothing around it but
 * whitespace: valid UTF-8 throughout, no raw control characters in strings, only the defined
 * escapes, \u surrogates in pairs, no duplicate keys in an object, nesting up to 64 levels.
 * Returns NULL when it is, or a message naming the first problem and its offset (a static
 * buffer, overwritten by the next call). */
const char *json_validate(const char *text, size_t len);

/* Like json_validate, and the value must be an object. */
const char *json_validate_object(const char *text, size_t len);

#endif
