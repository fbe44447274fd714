/* fuzz_dns_watch.c — arbitrary queries and answers on a few flows against dns_watch.
 *
 * The input is a sequence of records: op byte, flow byte, clock step byte, length byte, then that
 * many message bytes. Even ops are queries, odd ops answers. Invariants: the table never holds
 * more than its capacity; an accepted answer has the question of the newest query given with its
 * id on its flow; the counters add up to the calls made.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/dns_watch.h"

enum { CAP = 8, FLOWS = 4, KEPT = 64 };

struct given {
	int flow;
	uint16_t id;
	struct dns_question q;
};

static struct dns_message parsed, answer;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct given given[KEPT];
	struct dns_watch *w = NULL;
	struct dns_watch_flow flows[FLOWS];
	size_t n_given = 0, queries = 0, answers = 0;
	uint64_t now = 0;
	struct dns_watch_stats s;

	if (dns_watch_new(&w, CAP, 42) != 0)
		abort();
	for (int i = 0; i < FLOWS; i++) {
		memset(&flows[i], 0, sizeof flows[i]);
		flows[i].client.family = ADDR_V4;
		flows[i].client.bytes[0] = 10;
		flows[i].client.bytes[3] = (uint8_t)(i & 1);
		flows[i].server.family = ADDR_V4;
		flows[i].server.bytes[0] = 192;
		flows[i].client_port = (uint16_t)(50000 + (i >> 1));
		flows[i].server_port = 53;
	}
	while (size >= 4) {
		uint8_t op = data[0], fl = data[1] % FLOWS, step = data[2];
		size_t len = data[3];
		if (len > size - 4)
			len = size - 4;
		const uint8_t *msg = data + 4;
		data += 4 + len;
		size -= 4 + len;
		now += (uint64_t)step * 100;

		if (op % 2 == 0) {
			int rc = dns_watch_query(w, &flows[fl], msg, len, now);
			queries++;
			if (rc == 0 && dns_parse_query(msg, len, &parsed) == 0 && n_given < KEPT) {
				given[n_given] = (struct given){ .flow = fl, .id = parsed.header.id,
								 .q = parsed.question };
				n_given++;
			}
		} else {
			int rc = dns_watch_answer(w, &flows[fl], msg, len, now, &answer);
			answers++;
			if (rc == 0) {
				/* the newest query given on this flow with this id is the one
				 * remembered: the answer must match its question */
				bool found = false;
				for (size_t i = n_given; i-- > 0;) {
					if (given[i].flow == fl && given[i].id == answer.header.id) {
						found = dns_question_match(&given[i].q,
									   &answer.question);
						break;
					}
				}
				/* only when every query so far was kept can it be judged */
				if (!found && n_given < KEPT)
					abort();
			}
		}
		if (dns_watch_count(w) > CAP)
			abort();
	}
	dns_watch_get_stats(w, &s);
	if (s.queries + s.bad_queries != queries)
		abort();
	if (s.matched + s.unmatched + s.late + s.malformed != answers)
		abort();
	dns_watch_free(w);
	return 0;
}
