/* fuzz_resolv_conf.c — arbitrary resolv.conf texts: never more than max addresses, each of them
 * a valid address that formats and parses back to itself, and the count never grows when the
 * text is cut shorter at a line end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/resolv_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr found[RESOLV_CONF_MAX + 1];
	const char *text = (const char *)data;
	size_t n = resolv_conf_nameservers(text, size, found, RESOLV_CONF_MAX);

	if (n > RESOLV_CONF_MAX)
		abort();
	for (size_t i = 0; i < n; i++) {
		char buf[ADDR_STRLEN];
		struct addr back;
		if (found[i].family != ADDR_V4 && found[i].family != ADDR_V6)
			abort();
		if (addr_format(&found[i], buf, sizeof buf) < 0 ||
		    addr_parse(&back, buf, strlen(buf)) != 0 || !addr_equal(&back, &found[i]))
			abort();
	}
	const char *nl = size ? memchr(text, '\n', size) : NULL;
	if (nl) {
		struct addr fewer[RESOLV_CONF_MAX];
		size_t m = resolv_conf_nameservers(text, (size_t)(nl - text), fewer,
						   RESOLV_CONF_MAX);
		if (m > n || (m == 1 && !addr_equal(&fewer[0], &found[0])))
			abort();
	}
	return 0;
}
