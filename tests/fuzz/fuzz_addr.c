/* fuzz_addr.c — address and CIDR text parsing: no overread, and printing round-trips. */
#include "base/addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	if (!text)
		return 0;
	memcpy(text, data, size);

	struct addr a, b;
	if (addr_parse(&a, text, size) == 0) {
		char out[ADDR_STRLEN];
		int n = addr_format(&a, out, sizeof out);
		if (n <= 0 || addr_parse(&b, out, (size_t)n) != 0 || !addr_equal(&a, &b))
			abort();
	}
	struct cidr c, d;
	int rc = cidr_parse(&c, text, size);
	if (rc == 0 || rc == -EDOM) {
		char out[ADDR_STRLEN + 5];
		int n = cidr_format(&c, out, sizeof out);
		if (n <= 0 || cidr_parse(&d, out, (size_t)n) != 0 || d.prefix != c.prefix ||
		    !addr_equal(&c.base, &d.base) || !cidr_contains(&c, &c.base))
			abort();
	}
	free(text);
	return 0;
}
