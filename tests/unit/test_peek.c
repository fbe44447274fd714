/* test_peek.c — TLS SNI and HTTP Host peeking: real and hand-built ClientHellos, HTTP requests,
 * every truncation, every length field off by one, the bounds. */
#include "proxy/peek.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ClientHellos as real clients send them, captured as the first bytes of a TCP connection to a
 * python3 listener on 127.0.0.1:
 *   openssl s_client -connect 127.0.0.1:PORT -servername api.github.com            (TLS 1.3)
 *   openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername registry.npmjs.org
 *   openssl s_client -connect 127.0.0.1:PORT -noservername
 * (OpenSSL 3.0.19), and from Python 3's ssl module (same OpenSSL) through a MemoryBIO:
 *   ctx.wrap_bio(in, out, server_hostname="Example.COM") with maximum_version TLSv1_3 (it pads
 *   the hello to 512 bytes), and with maximum_version TLSv1_2 and "www.example.org". */

static const char HELLO_OPENSSL_TLS13[] =
	"160301013b01000137030319dcf743f2422aa9a65452cc2ee508b40ba182d5cea506a369ed6cea7a"
	"d92dee203f7b1c0ecfc907f4fdc451cdf02e3bdf539f7e146a5cdb0f77f16ed2aa03e053003e1302"
	"13031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039"
	"c009c0130033009d009c003d003c0035002f00ff010000b000000013001100000e6170692e676974"
	"6875622e636f6d000b000403000102000a00160014001d0017001e00190018010001010102010301"
	"04002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508"
	"06040105010601030303010302040205020602002b0009080304030303020301002d000201010033"
	"00260024001d002035e2865f079cb0b6870ad30bbd263a0bc347919bfa1dba500044e68a4b393508";

static const char HELLO_OPENSSL_TLS12[] =
	"16030100d2010000ce0303731d36be7d5f91d0db8dfb3adb7cd8860592700419e58645fb2bcf0834"
	"7e0f44000038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac014"
	"0039c009c0130033009d009c003d003c0035002f00ff0100006d0000001700150000127265676973"
	"7472792e6e706d6a732e6f7267000b000403000102000a000c000a001d0017001e00190018002300"
	"000016000000170000000d002a0028040305030603080708080809080a080b080408050806040105"
	"010601030303010302040205020602";

static const char HELLO_OPENSSL_NO_SNI[] =
	"16030101240100012003031bfd9c609f699df228dc5a751681c7bf59776557c346aa8a9778397068"
	"61fb89209905a291f5242b862eba55c499206111abd8325427aa8f07bbf71bc34f1f8428003e1302"
	"13031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039"
	"c009c0130033009d009c003d003c0035002f00ff01000099000b000403000102000a00160014001d"
	"0017001e0019001801000101010201030104002300000016000000170000000d002a002804030503"
	"0603080708080809080a080b080408050806040105010601030303010302040205020602002b0009"
	"080304030303020301002d00020101003300260024001d0020c506b068778b617ee33aa9901ac531"
	"ae4709cd23626e1b6b2dddfa14bb466500";

static const char HELLO_PYTHON_TLS13[] =
	"1603010200010001fc03035710986cbfd4dfd0648e0972d7c1b14e04017d35a0771ce45b3acc2c2f"
	"4f323c2090846fbbd7a78f6624a8045983f198da69fc5fc6b3a95753294bcf3293dcd4ff00241302"
	"13031301c02cc030c02bc02fcca9cca8c024c028c023c027009f009e006b006700ff0100018f0000"
	"0010000e00000b4578616d706c652e434f4d000b000403000102000a00160014001d0017001e0019"
	"001801000101010201030104002300000016000000170000000d002a002804030503060308070808"
	"0809080a080b080408050806040105010601030303010302040205020602002b0005040304030300"
	"2d00020101003300260024001d002074279c541887f86b27ae829dbcd978d5dd94704482604a1a18"
	"48818047ed3420001500e20000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000000000000000000000000000";

static const char HELLO_PYTHON_TLS12[] =
	"16030100b5010000b1030360d7dce3ba279652f42cd8581104652f7a05fc88ddddc1561d280b0382"
	"1151ec00001ec02cc030c02bc02fcca9cca8c024c028c023c027009f009e006b006700ff0100006a"
	"00000014001200000f7777772e6578616d706c652e6f7267000b000403000102000a000c000a001d"
	"0017001e00190018002300000016000000170000000d002a0028040305030603080708080809080a"
	"080b080408050806040105010601030303010302040205020602";

/* ---- helpers ---- */

#define BIG (2 * PEEK_MAX_BYTES)

struct bytes {
	uint8_t b[BIG];
	size_t n;
};

static void put(struct bytes *o, const void *p, size_t n)
{
	if (o->n + n > sizeof o->b)
		abort();
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void put8(struct bytes *o, size_t v)
{
	uint8_t b = (uint8_t)v;
	put(o, &b, 1);
}

static void put16(struct bytes *o, size_t v)
{
	put8(o, v >> 8);
	put8(o, v);
}

static void put24(struct bytes *o, size_t v)
{
	put8(o, v >> 16);
	put16(o, v);
}

static void put_str(struct bytes *o, const char *s)
{
	put(o, s, strlen(s));
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	abort();
}

static void put_hex(struct bytes *o, const char *hex)
{
	for (; hex[0] && hex[1]; hex += 2)
		put8(o, (size_t)(hex_digit(hex[0]) << 4 | hex_digit(hex[1])));
}

/* One call to peek_name_flags, on an exact-size heap copy so that ASan sees any overread. */
struct got {
	int rc;
	char name[PEEK_NAME_MAX];
	enum peek_source src;
	unsigned flags;
};

static struct got run(const uint8_t *buf, size_t n)
{
	struct got g;
	uint8_t *copy = calloc(n ? n : 1, 1); /* zeroed: gcc -O2 sees no uninitialised read */
	if (!copy)
		abort();
	if (n)
		memcpy(copy, buf, n);
	memset(g.name, 'x', sizeof g.name);
	g.rc = peek_name_flags(copy, n, g.name, sizeof g.name, &g.src, &g.flags);
	free(copy);
	return g;
}

static bool same(const struct got *a, const struct got *b)
{
	return a->rc == b->rc && strcmp(a->name, b->name) == 0 && a->src == b->src &&
	       a->flags == b->flags;
}

/* The growth promise of peek.h: every strict prefix answers PEEK_NEED_MORE or the full input's
 * answer (only PEEK_NEED_MORE when `wait`), and a decided answer survives appended bytes. */
static void check_growth(const uint8_t *buf, size_t n, bool wait)
{
	static struct bytes more;
	struct got full = run(buf, n);
	for (size_t m = 0; m < n; m++) {
		struct got g = run(buf, m);
		if (g.rc == PEEK_NEED_MORE)
			continue;
		if (wait || !same(&g, &full)) {
			check_fail(__FILE__, __LINE__,
				   "prefix %zu of %zu: %d \"%s\", full: %d \"%s\"", m, n, g.rc,
				   g.name, full.rc, full.name);
			return;
		}
	}
	if (full.rc == PEEK_NEED_MORE)
		return;
	more.n = 0;
	put(&more, buf, n);
	put(&more, "\x00\xff" "G\x16\r\n\r\n", 8);
	struct got g = run(more.b, more.n);
	if (!same(&g, &full))
		check_fail(__FILE__, __LINE__, "with bytes appended: %d \"%s\", alone: %d \"%s\"",
			   g.rc, g.name, full.rc, full.name);
}

/* Writes handshake message msg as handshake records: the first holds `first` bytes, the others
 * `chunk` bytes (0: the rest in one). */
static void put_records(struct bytes *o, const uint8_t *msg, size_t n, size_t first, size_t chunk,
			size_t version)
{
	size_t at = 0, size = first ? first : n;
	while (at < n) {
		if (size > n - at)
			size = n - at;
		put8(o, 0x16);
		put16(o, version);
		put16(o, size);
		put(o, msg + at, size);
		at += size;
		size = chunk ? chunk : n - at;
	}
}

/* ---- hand-built ClientHellos ---- */

enum hello_field {
	F_RECORD,
	F_HANDSHAKE,
	F_SESSION_ID,
	F_SUITES,
	F_COMPRESSION,
	F_EXTENSIONS,
	F_SNI_EXT,
	F_SNI_LIST,
	F_SNI_NAME,
	F_COUNT,
};

static const char *const field_names[F_COUNT] = {
	"record length", "handshake length", "session id length", "cipher suites length",
	"compression methods length", "extensions length", "server_name extension length",
	"server_name_list length", "host_name length",
};

struct hello_spec {
	const char *sni;      /* the host_name; NULL: no server_name extension */
	size_t sni_len;       /* 0: strlen(sni) */
	const char *sni_list; /* hex of the server_name_list entries, instead of one for sni */
	bool sni_twice;
	int ech;                /* encrypted_client_hello extensions */
	bool no_extensions;     /* end the hello after the compression methods */
	size_t padding;         /* bytes of a padding extension (21) at the end, if not 0 */
	size_t legacy_version;  /* 0: 0x0303 */
	size_t record_version;  /* 0: 0x0301 */
	size_t handshake_type;  /* 0: ClientHello */
	size_t session_id;      /* bytes */
	int suites;             /* bytes; 0: 4, -1: none */
	int compression;        /* bytes; 0: 1, -1: none */
	int delta[F_COUNT];     /* added to each length field */
	size_t first, chunk;    /* records as in put_records */
};

static size_t or_default(int v, size_t dflt)
{
	return v < 0 ? 0 : v == 0 ? dflt : (size_t)v;
}

static void build_hello(const struct hello_spec *s, struct bytes *o)
{
	static struct bytes list, exts, body, msg;
	const int *d = s->delta;
	list.n = exts.n = body.n = msg.n = 0;

	if (s->sni_list) {
		put_hex(&list, s->sni_list);
	} else if (s->sni) {
		size_t len = s->sni_len ? s->sni_len : strlen(s->sni);
		put8(&list, 0);
		put16(&list, len + (size_t)d[F_SNI_NAME]);
		put(&list, s->sni, len);
	}
	put_hex(&exts, "ff01000100");
	for (int i = 0; s->sni && i < (s->sni_twice ? 2 : 1); i++) {
		put16(&exts, 0);
		put16(&exts, list.n + 2 + (size_t)d[F_SNI_EXT]);
		put16(&exts, list.n + (size_t)d[F_SNI_LIST]);
		put(&exts, list.b, list.n);
	}
	for (int i = 0; i < s->ech; i++)
		put_hex(&exts, "fe0d000d" "00" "0001" "0001" "2a" "0002abcd" "0001ef");
	put_hex(&exts, "000b00020100");
	if (s->padding) {
		put16(&exts, 21);
		put16(&exts, s->padding);
		for (size_t i = 0; i < s->padding; i++)
			put8(&exts, 0);
	}

	put16(&body, s->legacy_version ? s->legacy_version : 0x0303);
	for (int i = 0; i < 32; i++)
		put8(&body, 0xa0 + (size_t)i);
	put8(&body, s->session_id + (size_t)d[F_SESSION_ID]);
	for (size_t i = 0; i < s->session_id; i++)
		put8(&body, 0x55);
	size_t suites = or_default(s->suites, 4);
	put16(&body, suites + (size_t)d[F_SUITES]);
	for (size_t i = 0; i < suites; i++)
		put8(&body, i % 2 ? 0x01 + i / 2 : 0x13);
	size_t compression = or_default(s->compression, 1);
	put8(&body, compression + (size_t)d[F_COMPRESSION]);
	for (size_t i = 0; i < compression; i++)
		put8(&body, 0);
	if (!s->no_extensions) {
		put16(&body, exts.n + (size_t)d[F_EXTENSIONS]);
		put(&body, exts.b, exts.n);
	}

	put8(&msg, s->handshake_type ? s->handshake_type : 1);
	put24(&msg, body.n + (size_t)d[F_HANDSHAKE]);
	put(&msg, body.b, body.n);

	o->n = 0;
	size_t version = s->record_version ? s->record_version : 0x0301;
	if (d[F_RECORD]) {
		put8(o, 0x16);
		put16(o, version);
		put16(o, msg.n + (size_t)d[F_RECORD]);
		put(o, msg.b, msg.n);
	} else {
		put_records(o, msg.b, msg.n, s->first, s->chunk, version);
	}
}

/* ---- TLS tests ---- */

struct real_hello {
	const char *name;
	const char *hex;
	int expect;
	const char *host;
};

static const struct real_hello real_hellos[] = {
	{"openssl TLS 1.3", HELLO_OPENSSL_TLS13, PEEK_FOUND, "api.github.com"},
	{"openssl TLS 1.2", HELLO_OPENSSL_TLS12, PEEK_FOUND, "registry.npmjs.org"},
	{"openssl no SNI", HELLO_OPENSSL_NO_SNI, PEEK_NOT_THIS, ""},
	{"python TLS 1.3 padded", HELLO_PYTHON_TLS13, PEEK_FOUND, "example.com"},
	{"python TLS 1.2", HELLO_PYTHON_TLS12, PEEK_FOUND, "www.example.org"},
};

static void test_tls_real_hellos(void)
{
	static struct bytes in, re;
	static const size_t chunks[] = {1, 2, 3, 4, 5, 37, 100};

	for (size_t i = 0; i < sizeof real_hellos / sizeof real_hellos[0]; i++) {
		const struct real_hello *row = &real_hellos[i];
		check_case("%s", row->name);
		in.n = 0;
		put_hex(&in, row->hex);
		struct got g = run(in.b, in.n);
		CHECK_EQ(g.rc, row->expect);
		CHECK_STR_EQ(g.name, row->host);
		CHECK_EQ(g.src, PEEK_SRC_SNI);
		CHECK_EQ(g.flags, 0);
		char name[PEEK_NAME_MAX];
		unsigned flags = 1;
		CHECK_EQ(peek_tls_sni(in.b, in.n, name, sizeof name, &flags), row->expect);
		CHECK_STR_EQ(name, row->host);
		CHECK_EQ(flags, 0);
		CHECK_EQ(peek_http_host(in.b, in.n, name, sizeof name), PEEK_NOT_THIS);
		check_growth(in.b, in.n, true);

		/* The same message cut into records of every size in chunks[]. */
		size_t msg_len = (size_t)in.b[3] << 8 | in.b[4];
		CHECK_EQ(msg_len + 5, in.n);
		for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
			check_case("%s in records of %zu bytes", row->name, chunks[k]);
			re.n = 0;
			put_records(&re, in.b + 5, msg_len, chunks[k], chunks[k], 0x0301);
			g = run(re.b, re.n);
			CHECK_EQ(g.rc, row->expect);
			CHECK_STR_EQ(g.name, row->host);
			if (chunks[k] == 3)
				check_growth(re.b, re.n, true);
		}
	}
}

/* A ClientHello split into two records at every byte. */
static void test_tls_two_records_every_split(void)
{
	static struct bytes in, re;
	in.n = 0;
	put_hex(&in, HELLO_OPENSSL_TLS13);
	size_t msg_len = in.n - 5;
	for (size_t split = 1; split < msg_len; split++) {
		check_case("split at %zu", split);
		re.n = 0;
		put_records(&re, in.b + 5, msg_len, split, 0, 0x0303);
		struct got g = run(re.b, re.n);
		CHECK_EQ(g.rc, PEEK_FOUND);
		CHECK_STR_EQ(g.name, "api.github.com");
		/* Each cut: the bytes up to the second record's header, and into it. */
		g = run(re.b, 5 + split);
		CHECK_EQ(g.rc, PEEK_NEED_MORE);
		g = run(re.b, 5 + split + 5);
		CHECK_EQ(g.rc, PEEK_NEED_MORE);
	}
}

struct hello_case {
	const char *name;
	struct hello_spec spec;
	int expect;
	const char *host;
	unsigned flags;
};

static const struct hello_case hello_cases[] = {
	{"plain", {.sni = "a.example"}, PEEK_FOUND, "a.example", 0},
	{"session id 32", {.sni = "a.example", .session_id = 32}, PEEK_FOUND, "a.example", 0},
	{"session id 33", {.sni = "a.example", .session_id = 33}, PEEK_MALFORMED, "", 0},
	{"odd cipher suites", {.sni = "a.example", .suites = 3}, PEEK_MALFORMED, "", 0},
	{"no cipher suites", {.sni = "a.example", .suites = -1}, PEEK_MALFORMED, "", 0},
	{"no compression methods", {.sni = "a.example", .compression = -1}, PEEK_MALFORMED, "", 0},
	{"two compression methods", {.sni = "a.example", .compression = 2}, PEEK_FOUND,
	 "a.example", 0},
	{"no extensions", {.no_extensions = true}, PEEK_NOT_THIS, "", 0},
	{"extensions without server_name", {.sni = NULL}, PEEK_NOT_THIS, "", 0},
	{"server_name twice", {.sni = "a.example", .sni_twice = true}, PEEK_MALFORMED, "", 0},
	{"empty server_name_list", {.sni = "x", .sni_list = ""}, PEEK_MALFORMED, "", 0},
	{"empty host_name", {.sni = "x", .sni_list = "000000"}, PEEK_MALFORMED, "", 0},
	{"unknown name type, then host_name", {.sni = "x", .sni_list = "080002abcd" "000001" "62"},
	 PEEK_FOUND, "b", 0},
	{"only an unknown name type", {.sni = "x", .sni_list = "080002abcd"}, PEEK_NOT_THIS, "",
	 0},
	{"first host_name wins", {.sni = "x", .sni_list = "0000016100000162"}, PEEK_FOUND, "a", 0},
	{"entry cut short", {.sni = "x", .sni_list = "00000561"}, PEEK_MALFORMED, "", 0},
	{"ECH offered", {.sni = "public.example", .ech = 1}, PEEK_FOUND, "public.example",
	 PEEK_FLAG_ECH},
	{"ECH without server_name", {.ech = 1}, PEEK_NOT_THIS, "", PEEK_FLAG_ECH},
	{"ECH twice", {.sni = "public.example", .ech = 2}, PEEK_MALFORMED, "", 0},
	{"legacy version 0x0300", {.sni = "a.example", .legacy_version = 0x0300}, PEEK_FOUND,
	 "a.example", 0},
	{"legacy version 0x0201", {.sni = "a.example", .legacy_version = 0x0201}, PEEK_MALFORMED,
	 "", 0},
	{"record version 0x0300", {.sni = "a.example", .record_version = 0x0300}, PEEK_FOUND,
	 "a.example", 0},
	{"record version 0x03ff", {.sni = "a.example", .record_version = 0x03ff}, PEEK_FOUND,
	 "a.example", 0},
	{"record version 0x0403", {.sni = "a.example", .record_version = 0x0403}, PEEK_NOT_THIS,
	 "", 0},
	{"ServerHello", {.sni = "a.example", .handshake_type = 2}, PEEK_MALFORMED, "", 0},
	{"handshake header split 1+3", {.sni = "a.example", .first = 1, .chunk = 3}, PEEK_FOUND,
	 "a.example", 0},
	{"records of one byte", {.sni = "a.example", .first = 1, .chunk = 1}, PEEK_FOUND,
	 "a.example", 0},
	{"padded", {.sni = "a.example", .padding = 1000}, PEEK_FOUND, "a.example", 0},
	{"SNI is an IPv4 literal", {.sni = "192.0.2.1"}, PEEK_NOT_THIS, "", 0},
};

static void test_tls_hand_built(void)
{
	static struct bytes in;
	for (size_t i = 0; i < sizeof hello_cases / sizeof hello_cases[0]; i++) {
		const struct hello_case *row = &hello_cases[i];
		check_case("%s", row->name);
		build_hello(&row->spec, &in);
		struct got g = run(in.b, in.n);
		CHECK_EQ(g.rc, row->expect);
		CHECK_STR_EQ(g.name, row->host);
		CHECK_EQ(g.flags, row->flags);
		CHECK_EQ(g.src, PEEK_SRC_SNI);
		check_growth(in.b, in.n, row->expect == PEEK_FOUND);
	}
}

/* Every length field of a hand-built hello one too long and one too short. */
static void test_tls_length_off_by_one(void)
{
	static struct bytes in;
	for (int f = 0; f < F_COUNT; f++) {
		for (int delta = -1; delta <= 1; delta += 2) {
			struct hello_spec spec = {.sni = "a.example"};
			spec.delta[f] = delta;
			/* A longer record holds the whole hello: what follows it is not needed. A
			 * longer handshake message waits for its last byte. */
			int expect = f == F_RECORD && delta > 0      ? PEEK_FOUND
				     : f == F_HANDSHAKE && delta > 0 ? PEEK_NEED_MORE
								     : PEEK_MALFORMED;
			check_case("%s %+d", field_names[f], delta);
			build_hello(&spec, &in);
			struct got g = run(in.b, in.n);
			CHECK_EQ(g.rc, expect);
			CHECK_STR_EQ(g.name, expect == PEEK_FOUND ? "a.example" : "");
			check_growth(in.b, in.n, expect == PEEK_FOUND);
		}
	}
}

struct raw_case {
	const char *name;
	const char *hex;
	int expect;
	enum peek_source src;
};

static const struct raw_case raw_cases[] = {
	{"nothing yet", "", PEEK_NEED_MORE, PEEK_SRC_NONE},
	{"handshake byte", "16", PEEK_NEED_MORE, PEEK_SRC_SNI},
	{"not SSL 3 / TLS", "1604", PEEK_NOT_THIS, PEEK_SRC_SNI},
	{"record header", "1603010040", PEEK_NEED_MORE, PEEK_SRC_SNI},
	{"empty record", "1603010000", PEEK_MALFORMED, PEEK_SRC_SNI},
	{"record 2^14+2048", "1603014800", PEEK_NEED_MORE, PEEK_SRC_SNI},
	{"record 2^14+2049", "1603014801", PEEK_MALFORMED, PEEK_SRC_SNI},
	{"not a ClientHello", "160301004002", PEEK_MALFORMED, PEEK_SRC_SNI},
	{"ClientHello over PEEK_MAX_BYTES", "1603010040" "01003ff8", PEEK_MALFORMED,
	 PEEK_SRC_SNI},
	{"ClientHello at PEEK_MAX_BYTES", "1603010040" "01003ff7", PEEK_NEED_MORE, PEEK_SRC_SNI},
	{"second record of another type", "1603010001" "01" "1703010003000040", PEEK_MALFORMED,
	 PEEK_SRC_SNI},
	{"second record not SSL 3 / TLS", "1603010001" "01" "1604030003000040", PEEK_MALFORMED,
	 PEEK_SRC_SNI},
	{"alert record", "15030100020228", PEEK_NOT_THIS, PEEK_SRC_NONE},
	{"SSLv2-compatible hello", "802e0103010015000000100000030000060000040000050000",
	 PEEK_NOT_THIS, PEEK_SRC_NONE},
	{"application data", "170303001c", PEEK_NOT_THIS, PEEK_SRC_NONE},
	{"digit first", "314745542f", PEEK_NOT_THIS, PEEK_SRC_NONE},
	{"letter then NUL", "4100", PEEK_NOT_THIS, PEEK_SRC_HOST},
	{"SSH banner", "5353482d322e302d4f70656e5353485f392e320d0a", PEEK_NOT_THIS, PEEK_SRC_HOST},
};

static void test_raw_bytes(void)
{
	static struct bytes in;
	for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
		const struct raw_case *row = &raw_cases[i];
		check_case("%s", row->name);
		in.n = 0;
		put_hex(&in, row->hex);
		struct got g = run(in.b, in.n);
		CHECK_EQ(g.rc, row->expect);
		CHECK_EQ(g.src, row->src);
		CHECK_STR_EQ(g.name, "");
		check_growth(in.b, in.n, false);
	}
}

/* The relay must not wait for bytes that are neither TLS nor HTTP: one byte decides. */
static void test_first_byte(void)
{
	for (int b = 0; b < 256; b++) {
		check_case("first byte 0x%02x", b);
		uint8_t byte = (uint8_t)b;
		bool letter = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
		struct got g = run(&byte, 1);
		CHECK_EQ(g.rc, b == 0x16 || letter ? PEEK_NEED_MORE : PEEK_NOT_THIS);
		CHECK_EQ(g.src, b == 0x16 ? PEEK_SRC_SNI : letter ? PEEK_SRC_HOST : PEEK_SRC_NONE);
	}
}

/* A ClientHello that fills PEEK_MAX_BYTES exactly is read; one byte more is refused as soon
 * as its length is known, and never waited for. */
static void test_tls_size_bound(void)
{
	static struct bytes in;
	struct hello_spec spec = {.sni = "a.example"};
	build_hello(&spec, &in);
	spec.padding = PEEK_MAX_BYTES - in.n - 4;
	build_hello(&spec, &in);
	CHECK_EQ(in.n, PEEK_MAX_BYTES);
	struct got g = run(in.b, in.n);
	CHECK_EQ(g.rc, PEEK_FOUND);
	CHECK_STR_EQ(g.name, "a.example");
	CHECK_EQ(run(in.b, in.n - 1).rc, PEEK_NEED_MORE);

	check_case("one byte over");
	spec.padding++;
	build_hello(&spec, &in);
	CHECK_EQ(run(in.b, in.n).rc, PEEK_MALFORMED);
	CHECK_EQ(run(in.b, 9).rc, PEEK_MALFORMED);
	CHECK_EQ(run(in.b, 8).rc, PEEK_NEED_MORE);

	check_case("fits in one record, not in two");
	spec.padding--;
	spec.first = 100;
	build_hello(&spec, &in);
	CHECK_EQ(in.n, PEEK_MAX_BYTES + 5);
	CHECK_EQ(run(in.b, in.n).rc, PEEK_MALFORMED);
	CHECK_EQ(run(in.b, 110).rc, PEEK_MALFORMED);
	CHECK_EQ(run(in.b, 109).rc, PEEK_NEED_MORE);
}

/* ---- HTTP tests ---- */

struct http_case {
	const char *name;
	const char *text;
	int expect;
	const char *host;
	size_t len; /* 0: strlen(text) */
};

#define GET "GET / HTTP/1.1\r\n"
/* A row whose text holds a NUL. */
#define WITH_NUL(name, text, expect, host) {name, text, expect, host, sizeof(text) - 1}

static const struct http_case http_cases[] = {
	{"Host", GET "Host: example.com\r\n\r\n", PEEK_FOUND, "example.com", 0},
	{"lowercase host", GET "host: example.com\r\n\r\n", PEEK_FOUND, "example.com", 0},
	{"HOST, mixed-case value", GET "HOST: WWW.Example.Com\r\n\r\n", PEEK_FOUND,
	 "www.example.com", 0},
	{"other headers around",
	 GET "User-Agent: curl/8.0\r\nhOsT: a.example\r\nAccept: */*\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"no space, trailing tabs", GET "Host:a.example \t\t\r\n\r\n", PEEK_FOUND, "a.example", 0},
	{"port removed", GET "Host: example.com:8080\r\n\r\n", PEEK_FOUND, "example.com", 0},
	{"empty port", GET "Host: example.com:\r\n\r\n", PEEK_FOUND, "example.com", 0},
	{"port 65535", GET "Host: a.example:65535\r\n\r\n", PEEK_FOUND, "a.example", 0},
	{"port 65536", GET "Host: a.example:65536\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"port six digits", GET "Host: a.example:000080\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"port not digits", GET "Host: a.example:8o\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"trailing dot", GET "Host: a.example.:80\r\n\r\n", PEEK_FOUND, "a.example", 0},
	{"IPv6 literal with port", GET "Host: [2001:db8::1]:80\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"IPv6 literal", GET "Host: [2001:db8::1]\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"bad IPv6 literal", GET "Host: [2001:db8::g]\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"IPv4 in brackets", GET "Host: [192.0.2.1]\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"unclosed bracket", GET "Host: [2001:db8::1\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"IPv4 literal", GET "Host: 192.0.2.1:80\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"hex IPv4 literal", GET "Host: 0x7f.1\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"digits then a TLD", GET "Host: 1e100.net\r\n\r\n", PEEK_FOUND, "1e100.net", 0},
	{"no Host", GET "Accept: */*\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"no headers at all", GET "\r\n", PEEK_NOT_THIS, "", 0},
	{"HTTP/1.0 without Host", "GET /index.html HTTP/1.0\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"HTTP/1.0 with Host", "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"empty Host", GET "Host:\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"blank Host", GET "Host:  \t\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"two Hosts", GET "Host: a.example\r\nHost: b.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"two Hosts, same value", GET "Host: a.example\r\nhost: a.example\r\n\r\n", PEEK_MALFORMED,
	 "", 0},
	{"empty Host then Host", GET "Host:\r\nHost: b.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with a space", GET "Host: a.example b.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with a comma", GET "Host: a.example,b.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with a control byte", GET "Host: a\x01.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with DEL", GET "Host: a.example\x7f\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with UTF-8", GET "Host: caf\xc3\xa9.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"Host with userinfo", GET "Host: user@a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	WITH_NUL("Host with a NUL", GET "Host: a\0b\r\n\r\n", PEEK_MALFORMED, ""),
	{"Host with percent", GET "Host: a%2eexample\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"space before the colon", GET "Host : a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"obs-fold of Host", GET "Host: a.example\r\n b.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"obs-fold of another", GET "X-A: 1\r\n\t2\r\nHost: a.example\r\n\r\n", PEEK_MALFORMED, "",
	 0},
	{"space before the first header", GET " Host: a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"header without colon", GET "Host a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"empty header name", GET ": x\r\nHost: a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	WITH_NUL("NUL in another header", GET "X: a\0b\r\nHost: a.example\r\n\r\n", PEEK_MALFORMED,
		 ""),
	{"obs-text in another header", GET "X: caf\xc3\xa9\r\nHost: a.example\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"bare LF in a header", GET "Host: a.example\n\r\n", PEEK_MALFORMED, "", 0},
	{"bare CR in a header", GET "X: a\rb\r\nHost: a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"bare LF ends the request line", "GET / HTTP/1.1\nHost: a.example\n\n", PEEK_NOT_THIS, "",
	 0},
	{"POST", "POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"absolute-form", "GET http://a.example:8080/x?y HTTP/1.1\r\nHost: b.example\r\n\r\n",
	 PEEK_FOUND, "a.example", 0},
	{"absolute-form without Host", "GET http://a.example/ HTTP/1.1\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"absolute-form https, uppercase", "GET HTTPS://A.Example HTTP/1.1\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"absolute-form with query", "GET http://a.example?q=1 HTTP/1.1\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"absolute-form with fragment", "GET ws://a.example#f HTTP/1.1\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"absolute-form IPv6", "GET http://[2001:db8::1]:80/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
	 PEEK_NOT_THIS, "", 0},
	{"absolute-form userinfo", "GET http://u:p@a.example/ HTTP/1.1\r\n\r\n", PEEK_MALFORMED,
	 "", 0},
	{"absolute-form empty authority", "GET http:///x HTTP/1.1\r\nHost: a.example\r\n\r\n",
	 PEEK_MALFORMED, "", 0},
	{"absolute-form bad host", "GET http://a!b/ HTTP/1.1\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"absolute-form, two Hosts", "GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n"
	 "Host: a.example\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"absolute-form, bad Host", "GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n",
	 PEEK_MALFORMED, "", 0},
	{"target without a scheme", "GET a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
	 PEEK_MALFORMED, "", 0},
	{"target with a scheme, no authority", "GET urn:x HTTP/1.1\r\nHost: a.example\r\n\r\n",
	 PEEK_MALFORMED, "", 0},
	{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", PEEK_FOUND, "a.example", 0},
	{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"CONNECT without Host", "CONNECT A.example:443 HTTP/1.1\r\n\r\n", PEEK_FOUND, "a.example",
	 0},
	{"CONNECT over Host", "CONNECT a.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n",
	 PEEK_FOUND, "a.example", 0},
	{"CONNECT without port", "CONNECT a.example HTTP/1.1\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"CONNECT empty port", "CONNECT a.example: HTTP/1.1\r\n\r\n", PEEK_MALFORMED, "", 0},
	{"CONNECT IPv6", "CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a.example\r\n\r\n", PEEK_MALFORMED,
	 "", 0},
	{"lowercase method", "get / HTTP/1.1\r\nHost: a.example\r\n\r\n", PEEK_FOUND, "a.example",
	 0},
	{"method of 32 bytes", "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF / HTTP/1.1\r\nHost: a\r\n\r\n",
	 PEEK_FOUND, "a", 0},
	{"method of 33 bytes", "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG / HTTP/1.1\r\nHost: a\r\n\r\n",
	 PEEK_NOT_THIS, "", 0},
	{"HTTP/1.9", "GET / HTTP/1.9\r\nHost: a.example\r\n\r\n", PEEK_FOUND, "a.example", 0},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"HTTP/0.9", "GET /\r\n", PEEK_NOT_THIS, "", 0},
	{"lowercase version", "GET / http/1.1\r\nHost: a.example\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n", PEEK_NOT_THIS, "", 0},
	{"target with a control byte", "GET /\x01 HTTP/1.1\r\nHost: a.example\r\n\r\n",
	 PEEK_NOT_THIS, "", 0},
	{"target with UTF-8", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.example\r\n\r\n", PEEK_FOUND,
	 "a.example", 0},
	{"SMTP", "EHLO client.example\r\n", PEEK_NOT_THIS, "", 0},
};

static void test_http(void)
{
	for (size_t i = 0; i < sizeof http_cases / sizeof http_cases[0]; i++) {
		const struct http_case *row = &http_cases[i];
		check_case("%s", row->name);
		size_t len = row->len ? row->len : strlen(row->text);
		const uint8_t *buf = (const uint8_t *)row->text;
		struct got g = run(buf, len);
		CHECK_EQ(g.rc, row->expect);
		CHECK_STR_EQ(g.name, row->host);
		CHECK_EQ(g.src, PEEK_SRC_HOST);
		CHECK_EQ(g.flags, 0);
		char name[PEEK_NAME_MAX];
		CHECK_EQ(peek_http_host(buf, len, name, sizeof name), row->expect);
		CHECK_STR_EQ(name, row->host);
		CHECK_EQ(peek_tls_sni(buf, len, name, sizeof name, NULL), PEEK_NOT_THIS);
		check_growth(buf, len, row->expect == PEEK_FOUND);
	}
}

/* A request line or header line of PEEK_LINE_MAX bytes is read, one byte more is refused; a
 * header block that has not ended within PEEK_MAX_BYTES is refused, not waited for. */
static void test_http_bounds(void)
{
	static struct bytes in;
	static const char *const heads[] = {"GET /", "GET / HTTP/1.1\r\nX-Long: "};
	static const char *const tails[] = {" HTTP/1.1\r\nHost: a.example\r\n\r\n",
					    "\r\nHost: a.example\r\n\r\n"};
	static const size_t tail_in_line[] = {11, 2};
	for (int which = 0; which < 2; which++) {
		for (size_t extra = 0; extra < 2; extra++) {
			check_case("%s line of PEEK_LINE_MAX + %zu", which ? "header" : "request",
				   extra);
			in.n = 0;
			put_str(&in, heads[which]);
			size_t line_start = which ? 16 : 0;
			while (in.n - line_start + tail_in_line[which] < PEEK_LINE_MAX + extra)
				put8(&in, 'a');
			put_str(&in, tails[which]);
			int expect = extra == 0 ? PEEK_FOUND
				     : which    ? PEEK_MALFORMED
						: PEEK_NOT_THIS;
			struct got g = run(in.b, in.n);
			CHECK_EQ(g.rc, expect);
			CHECK_STR_EQ(g.name, extra == 0 ? "a.example" : "");
		}
	}

	check_case("header block over PEEK_MAX_BYTES");
	in.n = 0;
	put_str(&in, GET "Host: a.example\r\n");
	while (in.n < PEEK_MAX_BYTES + 100)
		put_str(&in, "X-Filler: 0123456789abcdef0123456789abcdef\r\n");
	put_str(&in, "\r\n");
	CHECK_EQ(run(in.b, PEEK_MAX_BYTES - 1).rc, PEEK_NEED_MORE);
	CHECK_EQ(run(in.b, PEEK_MAX_BYTES).rc, PEEK_MALFORMED);
	CHECK_EQ(run(in.b, in.n).rc, PEEK_MALFORMED);

	check_case("header block ending at PEEK_MAX_BYTES");
	in.n = 0;
	put_str(&in, GET "Host: a.example\r\n");
	while (in.n + 100 < PEEK_MAX_BYTES - 4)
		put_str(&in, "X-F: 0123456789\r\n");
	put_str(&in, "X-F: ");
	while (in.n < PEEK_MAX_BYTES - 4)
		put8(&in, 'y');
	put_str(&in, "\r\n\r\n");
	CHECK_EQ(in.n, PEEK_MAX_BYTES);
	struct got g = run(in.b, in.n);
	CHECK_EQ(g.rc, PEEK_FOUND);
	CHECK_STR_EQ(g.name, "a.example");
	CHECK_EQ(run(in.b, in.n - 1).rc, PEEK_NEED_MORE);
}

/* ---- names, the same through SNI and Host ---- */

struct name_case {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	int expect;
	const char *host;
};

static const struct name_case name_cases[] = {
	{"plain", "a.example", 0, PEEK_FOUND, "a.example"},
	{"one label", "localhost", 0, PEEK_FOUND, "localhost"},
	{"uppercase", "A.Example.COM", 0, PEEK_FOUND, "a.example.com"},
	{"trailing dot", "a.example.", 0, PEEK_FOUND, "a.example"},
	{"two trailing dots", "a.example..", 0, PEEK_MALFORMED, ""},
	{"only a dot", ".", 0, PEEK_MALFORMED, ""},
	{"leading dot", ".a.example", 0, PEEK_MALFORMED, ""},
	{"empty label", "a..example", 0, PEEK_MALFORMED, ""},
	{"underscore, hyphen", "_srv.my-host.example", 0, PEEK_FOUND, "_srv.my-host.example"},
	{"punycode", "xn--bcher-kva.example", 0, PEEK_FOUND, "xn--bcher-kva.example"},
	{"IPv4", "192.0.2.1", 0, PEEK_NOT_THIS, ""},
	{"short IPv4", "127.1", 0, PEEK_NOT_THIS, ""},
	{"decimal IPv4", "2130706433", 0, PEEK_NOT_THIS, ""},
	{"hex IPv4", "0x7F.0x1", 0, PEEK_NOT_THIS, ""},
	{"numeric last label", "a.123", 0, PEEK_NOT_THIS, ""},
	{"numeric label inside", "1.2.example", 0, PEEK_FOUND, "1.2.example"},
	{"NUL", "a\0b", 3, PEEK_MALFORMED, ""},
	{"space", "a b", 0, PEEK_MALFORMED, ""},
	{"star", "*.example", 0, PEEK_MALFORMED, ""},
	{"slash", "a/b", 0, PEEK_MALFORMED, ""},
	{"colon", "a:b", 0, PEEK_MALFORMED, ""},
	{"IPv6 text", "2001:db8::1", 0, PEEK_MALFORMED, ""},
	{"UTF-8", "b\xc3\xbc" "cher.example", 0, PEEK_MALFORMED, ""},
	{"high byte", "a\xff", 0, PEEK_MALFORMED, ""},
	{"escape", "a\x1b[31m", 0, PEEK_MALFORMED, ""},
	{"CR", "a\rb", 0, PEEK_MALFORMED, ""},
};

/* What both parsers say of one name. */
static void check_name(const char *text, size_t len, int expect, const char *host)
{
	static struct bytes in;
	struct hello_spec spec = {.sni = text, .sni_len = len};
	build_hello(&spec, &in);
	struct got g = run(in.b, in.n);
	CHECK_EQ(g.rc, expect);
	CHECK_STR_EQ(g.name, host);

	in.n = 0;
	put_str(&in, GET "Host: ");
	put(&in, text, len);
	put_str(&in, "\r\n\r\n");
	g = run(in.b, in.n);
	CHECK_EQ(g.rc, expect);
	CHECK_STR_EQ(g.name, host);
}

static void test_names(void)
{
	for (size_t i = 0; i < sizeof name_cases / sizeof name_cases[0]; i++) {
		const struct name_case *row = &name_cases[i];
		check_case("%s", row->name);
		check_name(row->text, row->len ? row->len : strlen(row->text), row->expect,
			   row->host);
	}
}

static void test_name_lengths(void)
{
	char text[300], want[300];

	check_case("label of 63");
	memset(text, 'a', 63);
	memcpy(text + 63, ".example", 9);
	check_name(text, strlen(text), PEEK_FOUND, text);
	check_case("label of 64");
	memset(text, 'a', 64);
	memcpy(text + 64, ".example", 9);
	check_name(text, strlen(text), PEEK_MALFORMED, "");

	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
	memset(text, 'b', 253);
	text[63] = text[127] = text[191] = '.';
	text[253] = '\0';
	check_case("name of 253");
	check_name(text, 253, PEEK_FOUND, text);
	memcpy(want, text, 254);
	check_case("name of 253 and a trailing dot");
	text[253] = '.';
	check_name(text, 254, PEEK_FOUND, want);
	check_case("name of 254");
	text[253] = 'b';
	check_name(text, 254, PEEK_MALFORMED, "");
}

/* A name that does not fit the caller's buffer is refused, never cut. */
static void test_name_buffer(void)
{
	static struct bytes in;
	const char *req = GET "Host: a.example\r\n\r\n";
	char name[10];

	memset(name, 'x', sizeof name);
	CHECK_EQ(peek_http_host((const uint8_t *)req, strlen(req), name, 9), PEEK_MALFORMED);
	CHECK_STR_EQ(name, "");
	CHECK_EQ(peek_http_host((const uint8_t *)req, strlen(req), name, 10), PEEK_FOUND);
	CHECK_STR_EQ(name, "a.example");

	struct hello_spec spec = {.sni = "a.example"};
	build_hello(&spec, &in);
	unsigned flags;
	CHECK_EQ(peek_tls_sni(in.b, in.n, name, 9, &flags), PEEK_MALFORMED);
	CHECK_STR_EQ(name, "");
	CHECK_EQ(peek_tls_sni(in.b, in.n, name, 10, &flags), PEEK_FOUND);
	CHECK_STR_EQ(name, "a.example");

	enum peek_source src;
	CHECK_EQ(peek_name(in.b, in.n, name, sizeof name, &src), PEEK_FOUND);
	CHECK_EQ(src, PEEK_SRC_SNI);
	CHECK_EQ(peek_name(in.b, in.n, name, sizeof name, NULL), PEEK_FOUND);
	CHECK_EQ(peek_name_flags(in.b, in.n, name, sizeof name, NULL, NULL), PEEK_FOUND);
}

/* Bytes past PEEK_MAX_BYTES are not looked at. */
static void test_beyond_max(void)
{
	static struct bytes in;
	struct hello_spec spec = {.sni = "a.example", .padding = 1000};
	build_hello(&spec, &in);
	size_t hello = in.n;
	while (in.n < PEEK_MAX_BYTES + 1000)
		put8(&in, 0x17);
	struct got a = run(in.b, PEEK_MAX_BYTES), b = run(in.b, in.n);
	CHECK_EQ(a.rc, PEEK_FOUND);
	CHECK(same(&a, &b));
	CHECK(hello < PEEK_MAX_BYTES);

	in.n = 0;
	put_str(&in, GET);
	while (in.n < PEEK_MAX_BYTES)
		put_str(&in, "X: y\r\n");
	put_str(&in, "Host: a.example\r\n\r\n");
	a = run(in.b, PEEK_MAX_BYTES);
	b = run(in.b, in.n);
	CHECK_EQ(a.rc, PEEK_MALFORMED);
	CHECK(same(&a, &b));
}

static const struct check_test tests[] = {
	{"tls_real_hellos", test_tls_real_hellos},
	{"tls_two_records_every_split", test_tls_two_records_every_split},
	{"tls_hand_built", test_tls_hand_built},
	{"tls_length_off_by_one", test_tls_length_off_by_one},
	{"tls_size_bound", test_tls_size_bound},
	{"raw_bytes", test_raw_bytes},
	{"first_byte", test_first_byte},
	{"http", test_http},
	{"http_bounds", test_http_bounds},
	{"names", test_names},
	{"name_lengths", test_name_lengths},
	{"name_buffer", test_name_buffer},
	{"beyond_max", test_beyond_max},
};

CHECK_MAIN(tests)
