/* ranges.c — the address guard's ranges, as tables of prefixes checked in order. */
#include "policy/ranges.h"

#include <string.h>

struct range {
	uint8_t bytes[16];
	uint8_t prefix;
	uint8_t cls; /* enum range_class */
};

/* Most specific first: the first row containing the address names its class. */
static const struct range v4_ranges[] = {
	{{169, 254, 169, 254}, 32, RANGE_METADATA},
	{{168, 63, 129, 16}, 32, RANGE_METADATA},
	{{100, 100, 100, 200}, 32, RANGE_METADATA},
	{{192, 0, 0, 192}, 32, RANGE_METADATA},
	{{127, 0, 0, 0}, 8, RANGE_LOOPBACK},
	{{0, 0, 0, 0}, 8, RANGE_UNSPECIFIED},
	{{10, 0, 0, 0}, 8, RANGE_PRIVATE},
	{{172, 16, 0, 0}, 12, RANGE_PRIVATE},
	{{192, 168, 0, 0}, 16, RANGE_PRIVATE},
	{{169, 254, 0, 0}, 16, RANGE_LINK_LOCAL},
	{{100, 64, 0, 0}, 10, RANGE_CGNAT},
	{{224, 0, 0, 0}, 4, RANGE_MULTICAST},
	{{255, 255, 255, 255}, 32, RANGE_BROADCAST},
	{{240, 0, 0, 0}, 4, RANGE_RESERVED},
};

static const struct range v6_ranges[] = {
	{{0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, 128, RANGE_METADATA},
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, RANGE_LOOPBACK},
	{{0}, 128, RANGE_UNSPECIFIED},
	{{0xfc}, 7, RANGE_PRIVATE},
	{{0xfe, 0xc0}, 10, RANGE_PRIVATE},
	{{0, 0x64, 0xff, 0x9b, 0, 1}, 48, RANGE_PRIVATE},
	{{0xfe, 0x80}, 10, RANGE_LINK_LOCAL},
	{{0xff}, 8, RANGE_MULTICAST},
};

static bool in_range(const struct range *r, const uint8_t *bytes)
{
	unsigned full = r->prefix / 8, rest = r->prefix % 8;
	if (memcmp(r->bytes, bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xFF << (8 - rest));
	return (bytes[full] & mask) == r->bytes[full];
}

static enum range_class lookup(const struct range *table, size_t n, const uint8_t *bytes)
{
	for (size_t i = 0; i < n; i++)
		if (in_range(&table[i], bytes))
			return (enum range_class)table[i].cls;
	return RANGE_PUBLIC;
}

enum range_class range_classify(const struct addr *a)
{
	struct addr v4;
	if (addr_embedded_v4(a, &v4) || a->family == ADDR_V4)
		return lookup(v4_ranges, sizeof v4_ranges / sizeof v4_ranges[0], v4.bytes);
	if (a->family == ADDR_V6)
		return lookup(v6_ranges, sizeof v6_ranges / sizeof v6_ranges[0], a->bytes);
	return RANGE_PUBLIC;
}

const char *range_class_name(enum range_class c)
{
	switch (c) {
	case RANGE_PUBLIC:      return "public";
	case RANGE_LOOPBACK:    return "loopback";
	case RANGE_UNSPECIFIED: return "unspecified";
	case RANGE_METADATA:    return "metadata";
	case RANGE_PRIVATE:     return "private";
	case RANGE_LINK_LOCAL:  return "link-local";
	case RANGE_CGNAT:       return "cgnat";
	case RANGE_MULTICAST:   return "multicast";
	case RANGE_BROADCAST:   return "broadcast";
	case RANGE_RESERVED:    return "reserved";
	}
	return NULL;
}
