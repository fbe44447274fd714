/* nfqueue.c — the divert backend on Linux: the divert engine fed by NFQUEUE in the session
 * namespace.
 *
 * The namespace, routes and listeners are the netns backend's (session_net.c). The ruleset
 * differs: instead of kernel NAT, an output chain queues to sluice (NFQUEUE, libnetfilter_queue
 * over libmnl)
 *   - the replies of sluice's listeners (source 127.0.0.1 / ::1 and a listener port),
 *   - the session's DNS (TCP and UDP to port 53, whatever the destination),
 *   - the session's other TCP and UDP to non-loopback destinations,
 * with conntrack bypassed for all of them (notes/linux-interception.md D2). Each packet goes
 * through engine_process() and back with its verdict; verdicts of one wake-up are sent in one
 * sendmsg. lo's MTU is 65000 (D1: the queue's copy range is 65531 bytes, and a truncated packet
 * must never be returned), and the queue is asked for whole packets without GSO, so the kernel
 * completes checksums before queueing and the engine's incremental updates stay exact (D5).
 * Rewritten packets are rerouted by the kernel (D3).
 *
 * `--fail open` also sets the queue's fail-open flag and the rule's `bypass`: packets pass
 * when the queue is full or sluice is gone. With `--fail closed` they are dropped then.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/xt_NFQUEUE.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/batch.h>

#include "base/log.h"
#include "base/os.h"
#include "capture/capture.h"
#include "capture/session_net.h"
#include "divert/engine.h"

#define NFQ_QUEUE_NUM 0
#define NFQ_LO_MTU 65000          /* below the 65531-byte copy range (D1) */
#define NFQ_QUEUE_MAXLEN 8192     /* packets the kernel holds for us */
#define NFQ_RCVBUF (8 << 20)      /* socket receive buffer */
#define NFQ_RX_SIZE (65536 + 4096) /* one packet message; a multiple of 4 (slots align) */
#define NFQ_BATCH 32              /* messages received per wake-up, each into its own slot */
#define NFQ_SNDBUF (4 << 20)      /* asked for; batches stay below half of what is granted */
#define NFQ_VERDICT_HDR 128       /* a verdict message up to its payload attribute's data */
#define NFQ_TICK_MS 1000
#define NFQ_CONFIG_BUF 8192        /* a configuration message or its acknowledgement */

struct dq_counters {
	uint64_t received;
	uint64_t verdict_sends;
	uint64_t verdict_errors; /* sendmsg failures and NLMSG_ERROR answers */
	uint64_t recv_errors;
	uint64_t truncated;      /* the copy range cut the packet (never rewritten) */
	uint64_t backend_errors; /* pending only: errors to report to the engine */
};

/* A verdict of the batch: which packet, and its iovecs (to resend it alone). */
struct dq_pending {
	uint32_t id;
	unsigned iov_first, iov_count;
};

/* Fail-mode transitions seen on the packet thread, waiting to be reported on the loop's. */
#define NFQ_EVENTS 16

struct dq_event {
	bool entered;
	const char *reason; /* static */
};

/* Threads: the queue is served by a thread of its own, so that the kernel's work of reinjecting
 * packets (which runs in the thread that sends the verdicts, and is most of the cost) and the
 * relay's run on both cores. The engine is shared with the loop's thread (original-destination
 * lookups) under `lock`; fail-mode transitions are queued under it too and reported on the
 * loop's thread, through `notify`, because the audit trail belongs to that thread. */
struct dq_capture {
	struct capture base;
	struct session_net net;
	struct engine *engine;
	struct mnl_socket *nl;
	unsigned portid;
	bool fail_open;

	pthread_mutex_t lock; /* the engine, events[], n_events */
	bool lock_made;
	pthread_t thread;
	bool thread_started;
	int stop_fd;   /* eventfd: the packet thread ends when it is readable */
	int notify_fd; /* eventfd: fail-mode events wait in events[] */
	struct loop *loop;
	struct loop_io notify_io;
	struct dq_event events[NFQ_EVENTS];
	unsigned n_events;

	/* Each message of a wake-up is received into its own slot of rx, and a rewritten
	 * packet's verdict points at its bytes there: the batch goes out in one sendmsg whose
	 * iovecs alternate verdict headers and packets, so packets are not copied again. */
	char *rx; /* NFQ_BATCH slots of NFQ_RX_SIZE */
	char hdr[NFQ_BATCH][NFQ_VERDICT_HDR];
	struct iovec iov[3 * NFQ_BATCH];
	struct dq_pending sent[NFQ_BATCH];
	unsigned verdicts;   /* in the batch */
	unsigned iovs;
	size_t batch_bytes;
	size_t batch_limit;  /* below the socket's send buffer */
	struct dq_counters n;       /* under the lock */
	struct dq_counters pending; /* the packet thread's own, merged into n under the lock */

	void (*on_fail_mode)(void *ctx, bool entered, const char *reason);
	void *ctx;
};

static struct dq_capture *dq_of(struct capture *cap)
{
	return (struct dq_capture *)cap;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}


/* ---- the queue socket ---- */

/* Sends one configuration message and reads its acknowledgement. */
static int dq_config_talk(struct dq_capture *c, struct nlmsghdr *nlh)
{
	char buf[NFQ_CONFIG_BUF];
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(c->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	n = mnl_socket_recvfrom(c->nl, buf, sizeof buf);
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, c->portid, NULL, NULL) < 0)
		return -errno;
	return 0;
}

/* Opens the queue socket in the namespace the caller is in and binds queue NFQ_QUEUE_NUM. */
static int dq_open_queue(struct dq_capture *c)
{
	char buf[NFQ_CONFIG_BUF];
	struct nlmsghdr *nlh;
	unsigned seq = 1;
	int one = 1, rcvbuf = NFQ_RCVBUF;
	int err;

	c->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!c->nl || mnl_socket_bind(c->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		log_errno(err, "divert: netfilter netlink socket");
		return err;
	}
	c->portid = mnl_socket_get_portid(c->nl);

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, NFQ_QUEUE_NUM);
	nlh->nlmsg_seq = seq++;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	err = dq_config_talk(c, nlh);
	if (err) {
		log_errno(err, "divert: binding NFQUEUE %d%s", NFQ_QUEUE_NUM,
			  err == -EPERM ? " (needs root)" : "");
		return err;
	}

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, NFQ_QUEUE_NUM);
	nlh->nlmsg_seq = seq++;
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, NFQ_QUEUE_MAXLEN);
	if (c->fail_open) {
		mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
		mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	}
	err = dq_config_talk(c, nlh);
	if (err) {
		log_errno(err, "divert: configuring NFQUEUE %d", NFQ_QUEUE_NUM);
		return err;
	}

	/* A full socket buffer drops packets (counted by the kernel) rather than reporting
	 * ENOBUFS, which would tell us nothing we could act on. */
	int fd = mnl_socket_get_fd(c->nl);
	if (setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one) < 0)
		log_debug("divert: NETLINK_NO_ENOBUFS: %s", strerror(errno));
	/* An error answer to a verdict then carries its header only, not our 64 KB packet. */
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	/* A netlink message longer than the send buffer fails whole (EMSGSIZE), and with it every
	 * verdict batched in it: size the batches to what the socket takes. */
	int sndbuf = NFQ_SNDBUF;
	socklen_t len = sizeof sndbuf;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0)
		sndbuf = 0;
	c->batch_limit = (size_t)sndbuf / 2;
	if (c->batch_limit < NFQ_RX_SIZE + NFQ_VERDICT_HDR)
		c->batch_limit = NFQ_RX_SIZE + NFQ_VERDICT_HDR; /* one verdict at a time then */
	return 0;
}

/* Sends iov[first .. first+n) in one sendmsg. Returns 0 or -errno. */
static int dq_send(struct dq_capture *c, struct iovec *iov, size_t n)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct msghdr msg = {
		.msg_name = &kernel,
		.msg_namelen = sizeof kernel,
		.msg_iov = iov,
		.msg_iovlen = n,
	};

	for (int tries = 0; tries < 3; tries++) {
		if (sendmsg(mnl_socket_get_fd(c->nl), &msg, 0) >= 0)
			return 0;
		if (errno != EINTR && errno != ENOBUFS && errno != ENOMEM && errno != EAGAIN)
			break;
	}
	return -errno;
}

/* Sends the batched verdicts, if any, in one sendmsg. Should that fail (it takes a buffer as
 * large as the batch), each verdict is sent alone, and a rewrite that still fails is replaced by
 * the fail verdict without its packet: a packet never stays in the kernel's queue without a
 * verdict. Called without the lock; errors are counted in `pending`, merged under the lock by
 * the caller. */
static void dq_flush(struct dq_capture *c)
{
	if (c->verdicts == 0)
		return;
	c->pending.verdict_sends++;
	if (dq_send(c, c->iov, c->iovs) < 0) {
		c->pending.verdict_errors++;
		for (unsigned v = 0; v < c->verdicts; v++) {
			const struct dq_pending *pv = &c->sent[v];

			if (dq_send(c, c->iov + pv->iov_first, pv->iov_count) == 0)
				continue;
			c->pending.verdict_errors++;
			struct nlmsghdr *nlh = nfq_nlmsg_put(c->hdr[v], NFQNL_MSG_VERDICT,
							     NFQ_QUEUE_NUM);
			nfq_nlmsg_verdict_put(nlh, (int)pv->id, c->fail_open ? NF_ACCEPT : NF_DROP);
			struct iovec alone = { .iov_base = nlh, .iov_len = nlh->nlmsg_len };
			if (dq_send(c, &alone, 1) < 0)
				log_debug("divert: no verdict for packet %u: %s", (unsigned)pv->id,
					  strerror(errno));
		}
	}
	c->verdicts = 0;
	c->iovs = 0;
	c->batch_bytes = 0;
}

/* Appends the verdict of packet id; the packet (len bytes at payload, which must stay valid
 * until the flush) is sent back only when rewritten. */
static void dq_verdict(struct dq_capture *c, uint32_t id, enum engine_verdict v,
		       const uint8_t *payload, size_t len)
{
	static const uint8_t pad[MNL_ALIGNTO];
	size_t data = v == ENGINE_REWRITE ? MNL_ALIGN(len) : 0;
	struct nlmsghdr *nlh;

	if (c->verdicts == NFQ_BATCH || c->batch_bytes + NFQ_VERDICT_HDR + data > c->batch_limit)
		dq_flush(c);
	nlh = nfq_nlmsg_put(c->hdr[c->verdicts], NFQNL_MSG_VERDICT, NFQ_QUEUE_NUM);
	nfq_nlmsg_verdict_put(nlh, (int)id, v == ENGINE_DROP ? NF_DROP : NF_ACCEPT);
	size_t head = nlh->nlmsg_len;
	if (v == ENGINE_REWRITE) {
		struct nlattr *a = (struct nlattr *)((char *)nlh + head);

		a->nla_type = NFQA_PAYLOAD;
		a->nla_len = (uint16_t)(MNL_ATTR_HDRLEN + len);
		head += MNL_ATTR_HDRLEN;
		nlh->nlmsg_len = (uint32_t)(head + data);
	}
	struct dq_pending *pv = &c->sent[c->verdicts];
	pv->id = id;
	pv->iov_first = c->iovs;
	c->iov[c->iovs++] = (struct iovec){ .iov_base = nlh, .iov_len = head };
	if (v == ENGINE_REWRITE) {
		c->iov[c->iovs++] = (struct iovec){ .iov_base = (void *)payload, .iov_len = len };
		if (data > len)
			c->iov[c->iovs++] =
				(struct iovec){ .iov_base = (void *)pad, .iov_len = data - len };
	}
	pv->iov_count = c->iovs - pv->iov_first;
	c->verdicts++;
	c->batch_bytes += nlh->nlmsg_len;
}

/* One NFQNL_MSG_PACKET: the engine decides (under the lock), the verdict is batched. */
static void dq_packet(struct dq_capture *c, const struct nlmsghdr *nlh, uint64_t now)
{
	struct nlattr *attr[NFQA_MAX + 1] = { NULL };
	struct nfqnl_msg_packet_hdr *ph;
	enum engine_verdict v;
	uint8_t *payload = NULL;
	size_t len = 0;

	int parsed = nfq_nlmsg_parse(nlh, attr);
	if (!attr[NFQA_PACKET_HDR] ||
	    mnl_attr_get_payload_len(attr[NFQA_PACKET_HDR]) < sizeof *ph) {
		c->pending.recv_errors++; /* no id: nothing to give a verdict to */
		c->pending.backend_errors++;
		return;
	}
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	uint32_t id = ntohl(ph->packet_id);
	c->pending.received++;
	if (parsed < 0 || !attr[NFQA_PAYLOAD]) {
		dq_verdict(c, id, c->fail_open ? ENGINE_PASS : ENGINE_DROP, NULL, 0);
		c->pending.backend_errors++;
		return;
	}
	payload = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
	len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
	if (attr[NFQA_CAP_LEN] && ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN])) > len)
		c->pending.truncated++; /* pkt_parse sees a cut datagram: never rewritten */

	struct engine_packet p = { .buf = payload, .len = len };
	pthread_mutex_lock(&c->lock);
	v = engine_process(c->engine, &p, now);
	pthread_mutex_unlock(&c->lock);
	dq_verdict(c, id, v, payload, len);
}

static void dq_error_message(struct dq_capture *c, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof *e) || e->error == 0)
		return; /* an acknowledgement */
	c->pending.verdict_errors++;
	c->pending.backend_errors++;
}

/* Adds what the packet thread counted without the lock to the shared counters, and reports its
 * errors to the engine. Called with the lock held. */
static void merge_pending(struct dq_capture *c)
{
	struct dq_counters *n = &c->n, *p = &c->pending;

	n->received += p->received;
	n->verdict_sends += p->verdict_sends;
	n->verdict_errors += p->verdict_errors;
	n->recv_errors += p->recv_errors;
	n->truncated += p->truncated;
	for (uint64_t i = 0; i < p->backend_errors + p->verdict_errors; i++)
		engine_note_error(c->engine, ENGINE_ERR_BACKEND);
	memset(p, 0, sizeof *p);
}

/* Receives up to NFQ_BATCH messages, each into its own slot, has the engine decide them, and
 * sends the verdicts. The lock is held only around the engine's decisions and the counters, not
 * over the sends (which run the kernel's reinjection), so the loop's lookups never wait long. */
static void serve_queue(struct dq_capture *c)
{
	uint64_t now = monotonic_ms();

	for (int i = 0; i < NFQ_BATCH; i++) {
		char *slot = c->rx + (size_t)i * NFQ_RX_SIZE;
		ssize_t n = recv(mnl_socket_get_fd(c->nl), slot, NFQ_RX_SIZE,
				 MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				c->pending.recv_errors++;
				c->pending.backend_errors++;
			}
			break;
		}
		if (n > NFQ_RX_SIZE) { /* cannot happen with the 65531-byte copy range */
			c->pending.recv_errors++;
			c->pending.backend_errors++;
			continue;
		}
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)slot;
		int left = (int)n;

		for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_type == NLMSG_ERROR)
				dq_error_message(c, nlh);
			else if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_QUEUE &&
				 NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET)
				dq_packet(c, nlh, now);
		}
	}
	dq_flush(c);
	pthread_mutex_lock(&c->lock);
	merge_pending(c);
	pthread_mutex_unlock(&c->lock);
}

/* The packet thread: the queue, and the engine's sweep once a second, until stop_fd. */
static void *packet_thread(void *arg)
{
	struct dq_capture *c = arg;
	struct pollfd fds[2] = {
		{ .fd = mnl_socket_get_fd(c->nl), .events = POLLIN },
		{ .fd = c->stop_fd, .events = POLLIN },
	};
	uint64_t next_tick = monotonic_ms() + NFQ_TICK_MS;

	for (;;) {
		uint64_t now = monotonic_ms();
		int wait = next_tick > now ? (int)(next_tick - now) : 0;

		if (poll(fds, 2, wait) < 0) {
			if (errno == EINTR)
				continue;
			fatal_errno(errno, "divert: waiting for packets");
		}
		if (fds[1].revents)
			break;
		if (fds[0].revents)
			serve_queue(c);
		now = monotonic_ms();
		if (now >= next_tick) {
			pthread_mutex_lock(&c->lock);
			engine_tick(c->engine, now);
			pthread_mutex_unlock(&c->lock);
			next_tick = now + NFQ_TICK_MS;
		}
	}
	return NULL;
}

/* On the loop's thread: reports the fail-mode transitions the packet thread queued. */
static void on_notify(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct dq_capture *c = io->arg;
	struct dq_event ev[NFQ_EVENTS];
	uint64_t count;
	unsigned n;

	(void)loop;
	(void)events;
	if (read(c->notify_fd, &count, sizeof count) < 0)
		return;
	pthread_mutex_lock(&c->lock);
	n = c->n_events;
	memcpy(ev, c->events, n * sizeof ev[0]);
	c->n_events = 0;
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < n; i++)
		if (c->on_fail_mode)
			c->on_fail_mode(c->ctx, ev[i].entered, ev[i].reason);
}

/* ---- the ruleset ---- */

/* How the ruleset hands a packet to the queue: nftables' own `queue` statement, or — on
 * kernels built without it (CONFIG_NFT_QUEUE unset, as on the machines sluice is tested on) —
 * a jump to a chain whose one rule is the x_tables NFQUEUE target through nft_compat, as
 * iptables-nft does it. */
enum queue_method {
	QUEUE_NATIVE,
	QUEUE_COMPAT,
};

/* See the top of this file. Each family's listener replies first, then DNS to any address,
 * then everything not loopback. `notrack` in a raw-priority chain keeps conntrack from
 * classifying the rewritten flows as invalid (D2). */
static int generate_ruleset(const struct dq_capture *c, enum queue_method method, char *buf,
			    size_t size)
{
	static const char *const chain_names[2] = { "untracked", "divert" };
	static const char *const heads[2] = {
		"type filter hook output priority raw; policy accept;",
		"type filter hook output priority mangle; policy accept;",
	};
	static const char *const ip[CAPTURE_FAMILIES] = { "ip", "ip6" };
	static const char *const lo_addr[CAPTURE_FAMILIES] = { "127.0.0.1", "::1" };
	const struct capture_listener(*l)[CAPTURE_FAMILIES] = c->base.listeners;
	int families = c->net.have_ipv6 ? CAPTURE_FAMILIES : 1;
	struct ruleset_text t = { .buf = buf, .size = size };
	char action[64];

	ruleset_add(&t, "table inet sluice {\n");
	if (method == QUEUE_COMPAT)
		ruleset_add(&t, "\tchain to_queue {\n\t}\n");
	for (int chain = 0; chain < 2; chain++) {
		if (chain == 0)
			snprintf(action, sizeof action, "notrack");
		else if (method == QUEUE_COMPAT)
			snprintf(action, sizeof action, "jump to_queue");
		else
			snprintf(action, sizeof action, "queue num %d%s", NFQ_QUEUE_NUM,
				 c->fail_open ? " bypass" : "");
		ruleset_add(&t, "\tchain %s {\n\t\t%s\n", chain_names[chain], heads[chain]);
		/* A session process may not talk to a listener itself: only packets the engine
		 * rewrote (reinjected after the queue, past this raw-priority chain) reach them. */
		for (int f = 0; chain == 0 && f < families; f++) {
			ruleset_add(&t, "\t\t%s daddr %s tcp dport { %u, %u } drop\n", ip[f],
				    lo_addr[f], (unsigned)l[CAPTURE_TCP][f].port,
				    (unsigned)l[CAPTURE_DNS_TCP][f].port);
			ruleset_add(&t, "\t\t%s daddr %s udp dport { %u, %u } drop\n", ip[f],
				    lo_addr[f], (unsigned)l[CAPTURE_DNS_UDP][f].port,
				    (unsigned)l[CAPTURE_UDP][f].port);
		}
		for (int f = 0; f < families; f++) {
			ruleset_add(&t, "\t\t%s saddr %s tcp sport { %u, %u } %s\n", ip[f],
				    lo_addr[f], (unsigned)l[CAPTURE_TCP][f].port,
				    (unsigned)l[CAPTURE_DNS_TCP][f].port, action);
			ruleset_add(&t, "\t\t%s saddr %s udp sport { %u, %u } %s\n", ip[f],
				    lo_addr[f], (unsigned)l[CAPTURE_DNS_UDP][f].port,
				    (unsigned)l[CAPTURE_UDP][f].port, action);
		}
		ruleset_add(&t, "\t\tmeta l4proto { tcp, udp } th dport 53 %s\n"
				"\t\tip daddr 127.0.0.0/8 return\n"
				"\t\tip6 daddr ::1 return\n"
				"\t\tmeta l4proto { tcp, udp } %s\n"
				"\t}\n",
			    action, action);
	}
	ruleset_add(&t, "}\n");
	return t.overflow ? -ENOSPC : 0;
}

/* Appends the x_tables NFQUEUE target (revision 3) to chain to_queue of table inet sluice, in
 * the namespace the caller is in: one nf_tables batch over its own netlink socket. */
static int add_compat_queue_rule(bool bypass)
{
	char buf[NFQ_CONFIG_BUF];
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	struct nftnl_rule *rule = NULL;
	struct xt_NFQ_info_v3 *info = NULL;
	uint32_t seq = 1, rule_seq;
	int err = 0;

	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	rule = nftnl_rule_alloc();
	struct nftnl_expr *target = nftnl_expr_alloc("target");
	info = calloc(1, sizeof *info);
	if (!rule || !target || !info) {
		nftnl_expr_free(target);
		err = -ENOMEM;
		goto out;
	}
	info->queuenum = NFQ_QUEUE_NUM;
	info->queues_total = 1;
	info->flags = bypass ? NFQ_FLAG_BYPASS : 0;
	nftnl_expr_set_str(target, NFTNL_EXPR_TG_NAME, "NFQUEUE");
	nftnl_expr_set_u32(target, NFTNL_EXPR_TG_REV, 3);
	nftnl_expr_set(target, NFTNL_EXPR_TG_INFO, info, sizeof *info); /* owns info now */
	info = NULL;
	nftnl_rule_set_u32(rule, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, "sluice");
	nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, "to_queue");
	nftnl_rule_add_expr(rule, target);

	struct mnl_nlmsg_batch *batch = mnl_nlmsg_batch_start(buf, sizeof buf);
	nftnl_batch_begin(mnl_nlmsg_batch_current(batch), seq++);
	mnl_nlmsg_batch_next(batch);
	rule_seq = seq++;
	struct nlmsghdr *nlh = nftnl_rule_nlmsg_build_hdr(mnl_nlmsg_batch_current(batch),
							  NFT_MSG_NEWRULE, NFPROTO_INET,
							  NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK,
							  rule_seq);
	nftnl_rule_nlmsg_build_payload(nlh, rule);
	mnl_nlmsg_batch_next(batch);
	nftnl_batch_end(mnl_nlmsg_batch_current(batch), seq++);
	mnl_nlmsg_batch_next(batch);
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(batch), mnl_nlmsg_batch_size(batch)) < 0)
		err = -errno;
	mnl_nlmsg_batch_stop(batch);
	if (!err) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);

		if (n < 0 || mnl_cb_run(buf, (size_t)n, rule_seq, mnl_socket_get_portid(nl), NULL,
					NULL) < 0)
			err = -errno;
	}
out:
	free(info);
	nftnl_rule_free(rule);
	if (nl)
		mnl_socket_close(nl);
	return err;
}

/* Loads the ruleset with the native queue statement, or with the compat target where the
 * kernel has no nft_queue. */
static int load_rules(const struct dq_capture *c)
{
	char ruleset[SESSION_NET_RULESET_MAX];
	int err = generate_ruleset(c, QUEUE_NATIVE, ruleset, sizeof ruleset);

	if (!err && session_net_load_ruleset(ruleset, false) == 0)
		return 0;
	err = generate_ruleset(c, QUEUE_COMPAT, ruleset, sizeof ruleset);
	if (err) {
		log_errno(err, "divert: ruleset text");
		return err;
	}
	err = session_net_load_ruleset(ruleset, true);
	if (err)
		return err;
	err = add_compat_queue_rule(c->fail_open);
	if (err)
		log_errno(err, "divert: adding the NFQUEUE rule (neither nft_queue nor the x_tables "
			       "NFQUEUE target works in this kernel)");
	return err;
}

/* ---- the engine ---- */

/* Called by the engine, with the lock held, on whichever thread made the transition. When
 * more transitions wait than fit, the last slot takes the newest, so that the audit trail ends
 * in the engine's real state (flaps in between are lost there; the counters keep them). */
static void on_engine_fail_mode(void *ctx, bool entered, const char *reason)
{
	struct dq_capture *c = ctx;
	uint64_t one = 1;

	if (c->n_events < NFQ_EVENTS)
		c->events[c->n_events++] = (struct dq_event){ entered, reason };
	else
		c->events[NFQ_EVENTS - 1] = (struct dq_event){ entered, reason };
	if (c->notify_fd >= 0 && write(c->notify_fd, &one, sizeof one) < 0)
		return; /* the counter is saturated: a notification is pending anyway */
}

static int make_engine(struct dq_capture *c)
{
	struct engine_config ec = {
		.fail_open = c->fail_open,
		.on_fail_mode = on_engine_fail_mode,
		.ctx = c,
	};
	static const enum engine_kind kinds[CAPTURE_KINDS] = {
		[CAPTURE_TCP] = ENGINE_TCP,
		[CAPTURE_DNS_TCP] = ENGINE_DNS_TCP,
		[CAPTURE_DNS_UDP] = ENGINE_DNS_UDP,
		[CAPTURE_UDP] = ENGINE_UDP,
	};
	const uint8_t lo4[4] = { 127, 0, 0, 1 };
	const uint8_t lo6[16] = { [15] = 1 };

	addr_from_bytes(&ec.listen[ENGINE_IPV4], ADDR_V4, lo4);
	if (c->net.have_ipv6)
		addr_from_bytes(&ec.listen[ENGINE_IPV6], ADDR_V6, lo6);
	for (int k = 0; k < CAPTURE_KINDS; k++)
		for (int f = 0; f < CAPTURE_FAMILIES; f++)
			ec.port[kinds[k]][f] = c->base.listeners[k][f].port;
	if (os_random(&ec.hash_seed, sizeof ec.hash_seed) < 0)
		ec.hash_seed = monotonic_ms() * 0x9e3779b97f4a7c15u;
	return engine_new(&c->engine, &ec);
}

/* ---- the ops ---- */

static void dq_close(struct capture *cap)
{
	struct dq_capture *c = dq_of(cap);

	if (!c)
		return;
	if (c->thread_started) {
		uint64_t one = 1;

		if (write(c->stop_fd, &one, sizeof one) < 0)
			fatal_errno(errno, "divert: cannot stop the packet thread");
		pthread_join(c->thread, NULL);
	}
	if (c->loop)
		loop_io_stop(c->loop, &c->notify_io);
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	if (c->notify_fd >= 0)
		close(c->notify_fd);
	if (c->lock_made)
		pthread_mutex_destroy(&c->lock);
	if (c->nl)
		mnl_socket_close(c->nl);
	session_net_close_listeners(&c->base);
	session_net_close(&c->net);
	engine_free(c->engine);
	free(c->rx);
	free(c);
}

static int setup_inside(struct dq_capture *c, const struct capture_config *cfg)
{
	int err;

	err = session_net_make_listeners(&c->base, &c->net, cfg, false);
	if (err)
		return err;
	err = make_engine(c);
	if (err) {
		log_errno(err, "divert: cannot create the engine");
		return err;
	}
	err = dq_open_queue(c);
	if (err)
		return err;
	return load_rules(c);
}

static int dq_open(struct capture **out, const struct capture_config *cfg)
{
	static const struct capture_config defaults;
	struct dq_capture *c;
	int err;

	if (!cfg)
		cfg = &defaults;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	capture_init(&c->base, &capture_nfqueue);
	c->stop_fd = c->notify_fd = -1;
	session_net_init(&c->net);
	c->fail_open = cfg->fail_open;
	c->on_fail_mode = cfg->on_fail_mode;
	c->ctx = cfg->ctx;
	c->stop_fd = eventfd(0, EFD_CLOEXEC);
	c->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stop_fd < 0 || c->notify_fd < 0) {
		err = -errno;
		goto fail;
	}
	err = -pthread_mutex_init(&c->lock, NULL);
	if (err)
		goto fail;
	c->lock_made = true;
	c->rx = malloc((size_t)NFQ_BATCH * NFQ_RX_SIZE);
	if (!c->rx) {
		err = -ENOMEM;
		goto fail;
	}

	err = session_net_open(&c->net, cfg->lo_mtu ? cfg->lo_mtu : NFQ_LO_MTU);
	if (err)
		goto fail;
	err = setup_inside(c, cfg);
	session_net_leave(&c->net);
	if (err)
		goto fail;
	*out = &c->base;
	return 0;
fail:
	dq_close(&c->base);
	return err;
}

/* Starts the packet thread with every signal blocked (signals are the loop thread's, through
 * the session's signalfd), and watches notify_fd on the loop. */
static int dq_attach(struct capture *cap, struct loop *loop)
{
	struct dq_capture *c = dq_of(cap);
	sigset_t all, old;
	int err;

	c->loop = loop;
	loop_io_init(&c->notify_io, c->notify_fd, on_notify, c);
	err = loop_io_start(loop, &c->notify_io, LOOP_READ);
	if (err)
		return err;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&c->thread, NULL, packet_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return err;
	c->thread_started = true;
	return 0;
}

/* The engine's flow behind a peer seen on a listener. */
static int flow_of(struct dq_capture *c, int proto, const struct capture_endpoint *peer,
		   struct engine_flow *flow)
{
	struct addr a;
	int err;

	addr_unmap_v4(&peer->addr, &a);
	pthread_mutex_lock(&c->lock);
	err = engine_lookup(c->engine, proto, &a, peer->port, monotonic_ms(), flow);
	pthread_mutex_unlock(&c->lock);
	return err;
}

static int peer_of(loop_sock s, struct capture_endpoint *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getpeername((int)s, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	return capture_endpoint_from_sockaddr((struct sockaddr *)&ss, len, peer);
}

static int dq_tcp_original_dst(struct capture *cap, loop_sock accepted,
				struct capture_endpoint *dst)
{
	struct capture_endpoint peer;
	struct engine_flow flow;
	int err = peer_of(accepted, &peer);

	if (err)
		return err;
	err = flow_of(dq_of(cap), IPPROTO_TCP, &peer, &flow);
	if (err)
		return err;
	dst->addr = flow.orig_dst;
	dst->port = flow.orig_port;
	return 0;
}

static int dq_udp_recv(struct capture *cap, loop_sock listener, void *buf, size_t size,
			struct capture_endpoint *src, struct capture_endpoint *orig_dst)
{
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	struct engine_flow flow;
	ssize_t n;

	n = recvfrom((int)listener, buf, size, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from,
		     &fromlen);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if ((size_t)n > size)
		return -EMSGSIZE;
	if (capture_endpoint_from_sockaddr((struct sockaddr *)&from, fromlen, src) < 0)
		return -EPROTO;
	if (flow_of(dq_of(cap), IPPROTO_UDP, src, &flow) < 0)
		return -ENOENT; /* sent straight to the listener: not diverted */
	orig_dst->addr = flow.orig_dst;
	orig_dst->port = flow.orig_port;
	return (int)n;
}

/* The reply leaves from a listener socket towards the flow's mapped peer; the engine rewrites
 * its source to the flow's original destination, which must be `from`. */
static int dq_udp_send(struct capture *cap, const struct capture_endpoint *from,
			const struct capture_endpoint *to, const void *buf, size_t len)
{
	struct dq_capture *c = dq_of(cap);
	struct sockaddr_storage ss;
	struct engine_flow flow;
	socklen_t sslen;
	int f, err;

	if (from->addr.family != to->addr.family ||
	    (to->addr.family != ADDR_V4 && to->addr.family != ADDR_V6))
		return -EAFNOSUPPORT;
	f = to->addr.family == ADDR_V4 ? CAPTURE_IPV4 : CAPTURE_IPV6;
	err = flow_of(c, IPPROTO_UDP, to, &flow);
	if (err)
		return err;
	if (flow.orig_port != from->port || !addr_equal(&flow.orig_dst, &from->addr))
		return -EADDRNOTAVAIL;
	loop_sock s = c->base.listeners[from->port == 53 ? CAPTURE_DNS_UDP : CAPTURE_UDP][f].sock;
	if (s == CAPTURE_NO_SOCK)
		return -EAFNOSUPPORT;
	capture_endpoint_to_sockaddr(to, &ss, &sslen);
	if (sendto((int)s, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sslen) < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

static int dq_app_endpoint(struct capture *cap, int proto, const struct capture_endpoint *seen,
			    struct capture_endpoint *app)
{
	struct engine_flow flow;
	int err = flow_of(dq_of(cap), proto, seen, &flow);

	if (err)
		return err;
	app->addr = flow.client;
	app->port = flow.client_port;
	return 0;
}

static size_t dq_stats(struct capture *cap, struct capture_stat *out, size_t max)
{
	struct dq_capture *c = dq_of(cap);
	struct engine_stats s;
	struct dq_counters q;

	pthread_mutex_lock(&c->lock);
	engine_get_stats(c->engine, &s);
	q = c->n;
	pthread_mutex_unlock(&c->lock);
	const struct capture_stat all[] = {
		{ "nfqueue_received", q.received },
		{ "nfqueue_truncated", q.truncated },
		{ "nfqueue_verdict_sends", q.verdict_sends },
		{ "nfqueue_verdict_errors", q.verdict_errors },
		{ "nfqueue_recv_errors", q.recv_errors },
	};
	struct engine_counter ec[ENGINE_COUNTERS_MAX];
	size_t k = engine_counters(&s, ec, ENGINE_COUNTERS_MAX), n = 0;

	for (size_t i = 0; i < k && n < max; i++)
		out[n++] = (struct capture_stat){ ec[i].name, ec[i].value };
	for (size_t i = 0; i < sizeof all / sizeof all[0] && n < max; i++)
		out[n++] = all[i];
	return n;
}

static int dq_join(struct capture *cap)
{
	return session_net_enter(&dq_of(cap)->net);
}

const struct capture_ops capture_nfqueue = {
	.name = "divert",
	.open = dq_open,
	.tcp_original_dst = dq_tcp_original_dst,
	.udp_recv = dq_udp_recv,
	.udp_send = dq_udp_send,
	.app_endpoint = dq_app_endpoint,
	.attach = dq_attach,
	.stats = dq_stats,
	.join = dq_join,
	.close = dq_close,
};
