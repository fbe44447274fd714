/* resolv_conf.h — the resolvers named in a resolv.conf text: the ones sluice trusts.
 *
 * The DNS proxy forwards a session's query to the resolver the application asked (or to
 * --dns-upstream), but only the answers of trusted resolvers enter the session's DNS map:
 * otherwise a session could run its own resolver, have it answer "allowed.example is at my
 * address", and reach that address as allowed.example. On Linux the trusted ones are the
 * resolvers of sluice's own /etc/resolv.conf (read when the session starts).
 */
#ifndef SLUICE_BASE_RESOLV_CONF_H
#define SLUICE_BASE_RESOLV_CONF_H

#include <stddef.h>

#include "base/addr.h"

/* resolv.conf(5) allows three; more are read, up to the caller's max. */
#define RESOLV_CONF_MAX 8

/* Reads text[0..len) as resolv.conf: every line "nameserver ADDR" (blanks before and between
 * allowed, the keyword in lowercase, ADDR an IPv4 or IPv6 address, an IPv6 zone "%eth0"
 * ignored, anything after ADDR ignored) stores ADDR in out, in order, up to max. Comment lines
 * (# or ;), other keywords and malformed addresses are skipped. The text need not be
 * NUL-terminated and may hold NULs. Returns how many addresses were stored. */
size_t resolv_conf_nameservers(const char *text, size_t len, struct addr *out, size_t max);

#endif
