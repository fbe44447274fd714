#!/usr/bin/env bash
# test_bypass.sh — e2e: a session attacks its own capture from inside with real tools, trying to
# reach what the policy denies; every attempt must fail closed and be recorded.
#
#   ┌─ sluice-world-PID ─────────────────────────┐       ┌─ sluice-srv-PID ──────────────────────┐
#   │ sluice run --policy bypass.policy          │ veth  │ a.test 198.51.100.10 2001:db8:2::10   │
#   │ └─ session: curl, dig, openssl, socat,     │──────▶│ b.test 198.51.100.20, (no name) .40   │
#   │    python3, busybox (static), setsid ...   │ w0/s0 │ evil.test .66; loop.test, meta.test   │
#   │    IP literals, forged SNI and Host, other │       │ HTTP :80, HTTPS :443, UDP echo :443   │
#   │    resolvers, QUIC, ICMP, daemons, the     │       │ nft counters: what reached a server   │
#   │    listeners themselves                    │       └───────────────────────────────────────┘
#   └────────────────────────────────────────────┘  (the full map is at the top of world.sh)
#
# Each case checks three things: the attempt failed as the client sees it; the audit trail holds
# the decision (a connect, udp or dns event naming the rule, or the answer's dropped addresses);
# and nothing reached a server (counters in the servers' namespace: TCP connections opened, UDP
# datagrams, ICMP echo requests). Allowed controls beside them show the counters and the clients
# work, so that a leak would show.
#
# Usage: test_bypass.sh PATH/TO/sluice [netns|divert]     (the mode may also come from SLUICE_MODE)
# Needs root; exits 77 (skipped) otherwise. Every session is bounded by timeout(1).
set -e

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/checks.sh
. "$here/checks.sh"
suite_start "$0" "${1:-}" "${2:-}" ip nft ss curl dig dnsmasq socat \
	openssl python3 jq timeout pgrep setsid unshare nsenter
# shellcheck source=SCRIPTDIR/world.sh
. "$here/world.sh"

tmp=$(mktemp -d "/tmp/sluice-e2e-bypass.$$.XXXXXX")
cleanup() {
	local pid
	for pid in $(pgrep -f "^sleep 89$$\$" || true); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	world_down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# One session in the world, at most 60 s, with the policy $policy (default bypass.policy); rules
# are labelled FILE:LINE.
srun() {
	(cd "$tmp" && in_world timeout -k 5 60 "$sluice" run --mode "$mode" \
		--policy "${policy:-bypass.policy}" "$@")
}

cat >"$tmp/bypass.policy" <<'EOF'
# test_bypass.sh's policy: the suite asserts these line numbers
allow domain a.test port 80,443
allow cidr 198.51.100.40 port 80,443
deny domain evil.test
deny domain *.wild.test port 80
allow domain loop.test,meta.test port 80
allow domain b.test port 443 proto udp
allow port 8080 proto tcp
default deny
EOF
P=bypass.policy
ca=$tmp/ca.pem

# NAME SCRIPT [OPTION...]: runs the shell SCRIPT as a session (sluice's OPTIONs before `--`);
# its output goes to $tmp/NAME.out, stderr (sluice's lines among it) to $tmp/NAME.err, the
# trail to $tmp/NAME.jsonl. The servers' counters start from zero.
attack() {
	local name=$1 script=$2
	shift 2
	in_servers nft reset counters table inet bypass >/dev/null
	srun --audit "$tmp/$name.jsonl" "$@" -- sh -c "$script" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" || true
}

# What reached the servers since the counters were last reset: "tcp N, udp N, icmp N" (new TCP
# connections other than DNS, UDP datagrams other than DNS, ICMP echo requests).
reached() {
	in_servers nft -j list counters table inet bypass | jq -r '[.nftables[]
		| select(.counter) | "\(.counter.name | ltrimstr("reached_")) \(.counter.packets)"]
		| join(", ")'
}
nothing="tcp 0, udp 0, icmp 0"

# NAME: the session's connect events, "DST PORT DOMAIN SRC DECISION RULE" ("-" where absent),
# joined by "|".
connects() {
	jq -r 'select(.event == "connect") | [.dst, .dport, .domain // "-", .domain_src // "-",
		.decision, .rule] | map(tostring) | join(" ")' "$tmp/$1.jsonl" | paste -sd'|'
}

# NAME: its udp events, "DST PORT DECISION RULE".
udps() {
	jq -r 'select(.event == "udp") | "\(.dst) \(.dport) \(.decision) \(.rule)"' \
		"$tmp/$1.jsonl" | paste -sd'|'
}

# NAME: its dns events, "QNAME QTYPE DECISION RULE ANSWERS DROPPED" (lists joined by ",").
dnses() {
	jq -r 'select(.event == "dns") | [.qname, .qtype, .decision, .rule,
		"[\(.answers // [] | join(","))]",
		"[\(.dropped // [] | map("\(.address) \(.rule)") | join(","))]"] | join(" ")' \
		"$tmp/$1.jsonl" | paste -sd'|'
}

# NAME: its dns events, "QNAME QTYPE DECISION RULE RESOLVER".
asked() {
	jq -r 'select(.event == "dns") | [.qname, .qtype, .decision, .rule, .resolver]
		| map(tostring) | join(" ")' "$tmp/$1.jsonl" | paste -sd'|'
}

# NAME: the decision events of the session (not session_start/_end), their kinds joined.
decisions() {
	jq -r 'select(.event != "session_start" and .event != "session_end") | .event' \
		"$tmp/$1.jsonl" | paste -sd' '
}

# NAME: sluice's lines on the session's stderr, joined by "|".
said() {
	grep '^sluice:' "$tmp/$1.err" | paste -sd'|' || true
}

# NAME PREFIX: the first line of NAME's output that starts with PREFIX, without it.
out() {
	sed -n "s/^$2//p" "$tmp/$1.out" | head -n 1
}

nft list ruleset >"$tmp/host-nft.before"

echo "# the world (mode $mode)"
world_up "$tmp" 1
in_servers nft -f - <<'EOF'
table inet bypass {
	counter reached_tcp {}
	counter reached_udp {}
	counter reached_icmp {}
	chain input {
		type filter hook input priority -10; policy accept;
		tcp dport != 53 tcp flags & (syn | ack) == syn counter name "reached_tcp"
		udp dport != 53 counter name "reached_udp"
		icmp type echo-request counter name "reached_icmp"
		icmpv6 type echo-request counter name "reached_icmp"
	}
}
EOF
rc=0; srun -- true 2>"$tmp/err" || rc=$?
check "a session runs at all" "0 ''" "$rc '$(cat "$tmp/err")'"
if [ "$rc" != 0 ]; then
	echo "$passed passed, $failed failed (stopped: no session can run in mode $mode)"
	exit 1
fi

# Without sluice, from the world's namespace (as root, outside any session): each way out that
# the attacks below try is open there, so a leak would be answered and counted.
in_servers nft reset counters table inet bypass >/dev/null
cat >"$tmp/udp.py" <<'EOF'
# udp.py HOST PORT: one QUIC-like datagram (a long-header first byte, then "quic") to HOST:PORT,
# resolved through the system resolver; prints the reply's printable ASCII, or "no reply" after
# 1 s.
import socket, sys
ai = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), socket.AF_INET, socket.SOCK_DGRAM)[0]
s = socket.socket(ai[0], socket.SOCK_DGRAM)
s.settimeout(1)
try:
    s.sendto(b"\xc3quic", ai[4])
    print("reply:", "".join(chr(b) for b in s.recv(2048) if 32 <= b < 127).strip())
except OSError:
    print("no reply")
EOF
cat >"$tmp/icmp.py" <<'EOF'
# icmp.py ADDR: an ICMP echo request through a raw socket, then through an ICMP datagram socket
# (unprivileged ping); prints how each ended.
import select, socket, struct, sys
res = []
for what, kind in (("raw", socket.SOCK_RAW), ("dgram", socket.SOCK_DGRAM)):
    try:
        s = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
        s.sendto(struct.pack("!BBHHH", 8, 0, 0xf7fe, 0, 1), (sys.argv[1], 0))
        res.append(what + (" reply" if select.select([s], [], [], 1)[0] else " no reply"))
    except OSError as e:
        res.append("%s %s" % (what, type(e).__name__))
print("icmp:", ", ".join(res))
EOF
# Unprivileged ICMP (datagram sockets) for root's group in the world: the session's own namespace
# keeps the kernel's default, none.
in_world sysctl -qw net.ipv4.ping_group_range="0 0"
control_udp=$(in_world python3 "$tmp/udp.py" 198.51.100.10 443)
control_tcp=$(in_world curl -s --max-time 5 http://198.51.100.20/)
control_icmp=$(in_world python3 "$tmp/icmp.py" 198.51.100.10)
check "control, outside sluice: UDP 443, b.test's HTTP and ICMP are answered and counted" \
	"reply: udp443 quic from 198.51.100.10|hello from 198.51.100.20 host=198.51.100.20|"`
	`"icmp: raw reply, dgram reply|tcp 1, udp 1, icmp 2" \
	"$control_udp|$control_tcp|$control_icmp|$(reached)"

echo "# an allowed name's address, without the session resolving the name"
attack name "curl -s -4 --max-time 10 http://a.test/"
check "control: the allowed name (resolved by the session) answers" \
	"hello from 198.51.100.10 host=a.test|198.51.100.10 80 a.test dns allow $P:2|tcp 1, udp 0,"`
	`" icmp 0" "$(cat "$tmp/name.out")|$(connects name)|$(reached)"

attack literal "curl -s --max-time 5 -o /dev/null http://198.51.100.10/; echo \"curl \$?\""
check "curl http://198.51.100.10/ (a.test's address): denied, nothing reached" \
	"refused-or-reset $nothing" "$(fail_kind "$(out literal "curl ")") $(reached)"
check "... connect event: no name, default" "198.51.100.10 80 - - deny default" \
	"$(connects literal)"
check "... one line on stderr" "sluice: denied tcp 198.51.100.10:80 by default" \
	"$(said literal)"

attack resolve "curl -s --max-time 5 --cacert $ca --resolve a.test:443:198.51.100.10 \
	https://a.test/; echo \"curl \$?\""
check "curl --resolve a.test:443:198.51.100.10 (SNI a.test, never resolved): denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out resolve "curl ")") $(reached)"
check "... connect event: the SNI's name, decided without it" \
	"198.51.100.10 443 a.test sni deny default" "$(connects resolve)"
check "... one line on stderr says why" \
	"sluice: denied tcp 198.51.100.10:443 (a.test, not resolved by the session) by default" \
	"$(said resolve)"

attack host "curl -s --max-time 5 -H 'Host: a.test' http://198.51.100.10/; echo \"curl \$?\""
check "curl -H 'Host: a.test' http://198.51.100.10/ (never resolved): denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out host "curl ")") $(reached)"
check "... connect event: the Host header's name, decided without it" \
	"198.51.100.10 80 a.test host deny default" "$(connects host)"
check "... one line on stderr says why" \
	"sluice: denied tcp 198.51.100.10:80 (a.test, not resolved by the session) by default" \
	"$(said host)"

attack resolved "dig +time=2 +tries=1 +short a.test >/dev/null
	curl -s --max-time 10 -H 'Host: a.test' http://198.51.100.10/"
check "control: the same request once the session resolved a.test: allowed, name from DNS" \
	"hello from 198.51.100.10 host=a.test|198.51.100.10 80 a.test dns allow $P:2" \
	"$(cat "$tmp/resolved.out")|$(connects resolved)"

echo "# a denied name to an allowed address"
sni() { # SERVERNAME: openssl s_client to 198.51.100.40:443 with that SNI, in a session
	attack "sni-$1" "openssl s_client -connect 198.51.100.40:443 -servername $1 \
		-CAfile $ca </dev/null >$tmp/sni-$1.tls 2>&1; echo \"s_client \$?\""
	echo "$(out "sni-$1" "s_client ")" \
		"$(grep -q '^Server certificate' "$tmp/sni-$1.tls" && echo handshake || echo none)"
}
check "control: SNI c.wild.test to 198.51.100.40:443 (allowed by cidr, line 3): handshake" \
	"0 handshake|198.51.100.40 443 c.wild.test sni allow $P:3" \
	"$(sni c.wild.test)|$(connects sni-c.wild.test)"
check "openssl s_client -servername evil.test to the same address: no handshake" \
	"1 none $nothing" "$(sni evil.test) $(reached)"
check "... connect event: the SNI's name, denied by its rule (line 4) after the cidr rule" \
	"198.51.100.40 443 evil.test sni deny $P:4" "$(connects sni-evil.test)"
check "... one line on stderr" "sluice: denied tcp 198.51.100.40:443 (evil.test) by $P:4" \
	"$(said sni-evil.test)"

attack host-evil "curl -s --max-time 5 -H 'Host: evil.test' http://198.51.100.40/
	echo \"curl \$?\""
check "curl -H 'Host: evil.test' http://198.51.100.40/: denied" "refused-or-reset $nothing" \
	"$(fail_kind "$(out host-evil "curl ")") $(reached)"
check "... connect event: the Host header's name, line 4" \
	"198.51.100.40 80 evil.test host deny $P:4" "$(connects host-evil)"
check "... one line on stderr" "sluice: denied tcp 198.51.100.40:80 (evil.test) by $P:4" \
	"$(said host-evil)"
attack host-port "curl -s --max-time 5 -H 'Host: c.wild.test' http://198.51.100.40/
	echo \"curl \$?\""
check "Host: c.wild.test on port 80 (deny *.wild.test port 80, line 5): denied, recorded" \
	"refused-or-reset $nothing|198.51.100.40 80 c.wild.test host deny $P:5" \
	"$(fail_kind "$(out host-port "curl ")") $(reached)|$(connects host-port)"

attack fronted "dig +time=2 +tries=1 +short a.test
	curl -s --max-time 5 -k --resolve evil.test:443:198.51.100.10 https://evil.test/
	echo \"curl \$?\""
check "fronting: a.test resolved, its address reused with SNI evil.test: denied" \
	"198.51.100.10 refused-or-reset $nothing" \
	"$(head -n 1 "$tmp/fronted.out") $(fail_kind "$(out fronted "curl ")") $(reached)"
check "... connect event: evil.test from the SNI, line 4" \
	"198.51.100.10 443 evil.test sni deny $P:4" "$(connects fronted)"

echo "# IPv6 and IPv4-mapped literals"
attack v6 "printf 'GET / HTTP/1.0\r\n\r\n' | socat -t 2 - 'TCP6:[2001:db8:2::10]:80'
	echo \"socat \$?\"
	curl -s -g --max-time 5 -H 'Host: a.test' 'http://[2001:db8:2::10]/'; echo \"curl \$?\""
check "socat to [2001:db8:2::10]:80 (a.test's AAAA), and curl with Host: a.test: no answer" \
	"refused-or-reset $nothing" \
	"$(if grep -q hello "$tmp/v6.out"; then echo answered; else fail_kind "$(out v6 "curl ")"
		fi) $(reached)"
check "... connect events: no name, then the unresolved Host name; default both times" \
	"2001:db8:2::10 80 - - deny default|2001:db8:2::10 80 a.test host deny default" \
	"$(connects v6)"
check "... one line on stderr each" "sluice: denied tcp [2001:db8:2::10]:80 by default|"`
	`"sluice: denied tcp [2001:db8:2::10]:80 (a.test, not resolved by the session) by default" \
	"$(said v6)"

attack mapped "curl -s -g --max-time 5 -o /dev/null 'http://[::ffff:198.51.100.10]/'
	echo \"curl \$?\""
check "curl http://[::ffff:198.51.100.10]/ (a.test's address, IPv4-mapped): denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out mapped "curl ")") $(reached)"
check "... connect event and stderr name the IPv4 address" \
	"198.51.100.10 80 - - deny default|sluice: denied tcp 198.51.100.10:80 by default" \
	"$(connects mapped)|$(said mapped)"
attack mapped-cidr "curl -s -g --max-time 10 'http://[::ffff:198.51.100.40]/'
	curl -s -g --max-time 5 -H 'Host: evil.test' 'http://[::ffff:198.51.100.40]/'
	echo \"curl \$?\""
check "control: [::ffff:198.51.100.40] is matched by the IPv4 cidr rule (line 3)" \
	"hello from 198.51.100.40 host=[::ffff:198.51.100.40]" "$(head -n 1 "$tmp/mapped-cidr.out")"
check "... and with Host: evil.test it is denied by line 4" "refused-or-reset|"`
	`"198.51.100.40 80 - - allow $P:3|198.51.100.40 80 evil.test host deny $P:4" \
	"$(fail_kind "$(out mapped-cidr "curl ")")|$(connects mapped-cidr)"
attack mapped-meta "curl -s -g --max-time 5 -o /dev/null 'http://[::ffff:169.254.169.254]:8080/'
	echo \"curl \$?\""
check "[::ffff:169.254.169.254]:8080, which 'allow port 8080' (line 8) would allow: denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out mapped-meta "curl ")") $(reached)"
check "... by the guard, as 169.254.169.254, in the event and on stderr" \
	"169.254.169.254 8080 - - deny guard:metadata|"`
	`"sluice: denied tcp 169.254.169.254:8080 by guard:metadata" \
	"$(connects mapped-meta)|$(said mapped-meta)"

echo "# DNS answers rebinding an allowed name (line 6)"
for t in loop.test:127.0.0.1:loopback meta.test:169.254.169.254:metadata; do
	IFS=: read -r name address range <<<"$t"
	attack "rebind-$name" "curl -s --max-time 5 -o /dev/null http://$name/; echo \"curl \$?\""
	check "curl http://$name/ ($name A $address): no address arrives" \
		"no-such-name $nothing" "$(fail_kind "$(out "rebind-$name" "curl ")") $(reached)"
	check "... the dns event (A) drops $address by guard:$range; nothing connects" \
		"$name A allow $P:6 [] [$address guard:$range]|$name AAAA allow $P:6 [] []|"`
		`"dns dns" \
		"$(dnses "rebind-$name")|$(decisions "rebind-$name")"
	check "... one line on stderr" \
		"sluice: dropped from dns $name (A): $address by guard:$range" \
		"$(said "rebind-$name")"
done
attack rebind-forced "curl -s --max-time 5 -o /dev/null \
	--resolve meta.test:80:169.254.169.254 http://meta.test/; echo \"curl \$?\""
check "then to 169.254.169.254 anyway, with Host: meta.test (allowed by name): denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out rebind-forced "curl ")") $(reached)"
check "... by the guard, in the event and on stderr" \
	"169.254.169.254 80 meta.test host deny guard:metadata|"`
	`"sluice: denied tcp 169.254.169.254:80 (meta.test) by guard:metadata" \
	"$(connects rebind-forced)|$(said rebind-forced)"

echo "# DNS to a resolver address of the session's choosing (203.0.113.99: nothing there)"
attack resolver "dig @203.0.113.99 +time=2 +tries=1 evil.test
	dig @203.0.113.99 +tcp +time=2 +tries=1 evil.test"
check "dig @203.0.113.99 evil.test, over UDP then TCP: NXDOMAIN both, from the DNS proxy" \
	"NXDOMAIN NXDOMAIN" \
	"$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' "$tmp/resolver.out" | oneline)"
check "... dns events: denied by line 4, no resolver asked" \
	"evil.test A deny $P:4 null|evil.test A deny $P:4 null" \
	"$(asked resolver)"
line="sluice: denied dns evil.test (A) by $P:4"
check "... one line on stderr each" "$line|$line" "$(said resolver)"
check "... never sent anywhere: dnsmasq has not seen evil.test" 0 \
	"$(grep -c 'evil\.test' "$tmp/dnsmasq.log" || true)"
# An allowed name goes to the resolver the session asked, and 203.0.113.99 has none: this half
# names the world's with --dns-upstream.
attack upstream "dig @203.0.113.99 +time=2 +tries=1 +short a.test
	dig @203.0.113.99 +tcp +time=2 +tries=1 +short a.test" --dns-upstream 203.0.113.53
check "with --dns-upstream 203.0.113.53: a.test asked of 203.0.113.99 over UDP and TCP is"`
	`" answered by the world's resolver" "198.51.100.10 198.51.100.10" \
	"$(oneline <"$tmp/upstream.out")"
check "... dns events: allowed by line 2, resolver 203.0.113.53" \
	"a.test A allow $P:2 203.0.113.53|a.test A allow $P:2 203.0.113.53" \
	"$(asked upstream)"

# A resolver of the session's choosing that lies: 203.0.113.98 answers a.test with evil.test's
# address. Its answer reaches the application (sluice forwards to the resolver asked), but only
# the system's resolvers (sluice's resolv.conf: 203.0.113.53) name addresses in the DNS map, so
# the allowed name does not open 198.51.100.66.
in_servers ip addr add 203.0.113.98/32 dev lo
world_spawn "$tmp/rogue.out" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
	--no-hosts --pid-file --user=root --bind-interfaces --listen-address=203.0.113.98 \
	--host-record=a.test,198.51.100.66
rogue_ready() {
	[ "$(in_servers dig @203.0.113.98 +time=1 +tries=1 +short a.test)" = 198.51.100.66 ]
}
poll 100 rogue_ready || echo "warning: the lying resolver did not start" >&2
attack rogue "dig @203.0.113.98 +time=2 +tries=1 +short a.test
	curl -s --max-time 5 -o /dev/null -w 'http %{http_code}\n' http://198.51.100.66/"
check "a lying resolver of the session's choosing: its answer arrives, the address stays shut" \
	"198.51.100.66 http 000 $nothing" "$(oneline <"$tmp/rogue.out") $(reached)"
check "... dns event allowed (the name is), connect denied by default without a name" \
	"a.test A allow $P:2 203.0.113.98|198.51.100.66 80 - - deny default" \
	"$(asked rogue)|$(connects rogue)"

echo "# QUIC-like UDP to 443"
attack quic "python3 $tmp/udp.py a.test 443"
check "a datagram to a.test:443 (line 2 allows a.test on 443, without proto udp): no reply" \
	"no reply $nothing" "$(cat "$tmp/quic.out") $(reached)"
check "... udp event: denied by default" "198.51.100.10 443 deny default" "$(udps quic)"
check "... one line on stderr" "sluice: denied udp 198.51.100.10:443 (a.test) by default" \
	"$(said quic)"
attack quic-allowed "python3 $tmp/udp.py b.test 443"
check "control: to b.test:443, allowed by 'allow domain b.test port 443 proto udp': relayed" \
	"reply: udp443 quic from 198.51.100.20 tcp 0, udp 1, icmp 0" \
	"$(cat "$tmp/quic-allowed.out") $(reached)"
check "... udp event: allowed by line 7" "198.51.100.20 443 allow $P:7" "$(udps quic-allowed)"
cat >"$tmp/open.policy" <<'EOF'
allow domain a.test
default allow
EOF
policy=open.policy attack quic-open "python3 $tmp/udp.py a.test 443
	python3 $tmp/udp.py 198.51.100.20 443; curl -s --max-time 10 http://198.51.100.20/"
check "under 'allow domain a.test' and 'default allow': UDP 443 gets no reply, TCP works" \
	"no reply|no reply|hello from 198.51.100.20 host=198.51.100.20|tcp 1, udp 0, icmp 0" \
	"$(paste -sd'|' <"$tmp/quic-open.out")|$(reached)"
check "... udp events: denied by default (which allows TCP only)" \
	"198.51.100.10 443 deny default|198.51.100.20 443 deny default|198.51.100.20 80 - - allow"`
	`" default" "$(udps quic-open)|$(connects quic-open)"
check "... one line on stderr each" "sluice: denied udp 198.51.100.10:443 (a.test) by default|"`
	`"sluice: denied udp 198.51.100.20:443 by default" "$(said quic-open)"

echo "# raw ICMP"
have_busybox=$(command -v busybox || true)
attack icmp "python3 $tmp/icmp.py 198.51.100.10
	${have_busybox:+busybox ping -c 1 -W 2 198.51.100.10 >/dev/null 2>&1; echo \"ping \$?\"}"
check "raw and datagram ICMP sockets: refused; nothing reached the servers" \
	"icmp: raw PermissionError, dgram PermissionError $nothing" \
	"$(out icmp "icmp: " | sed 's/^/icmp: /') $(reached)"
if [ -n "$have_busybox" ]; then
	check "... busybox ping fails" 1 "$(out icmp "ping ")"
else
	echo "skip busybox ping: busybox is not installed (scripts/deps.sh installs busybox-static)"
fi
check "... ICMP never reaches sluice: nothing to decide, no event" "" "$(decisions icmp)"

echo "# a statically linked client (busybox)"
if [ -n "$have_busybox" ] && ! ldd "$have_busybox" >/dev/null 2>&1; then
	attack static "busybox wget -q -O - http://a.test/
		busybox wget -q -O /dev/null http://198.51.100.20/ 2>/dev/null; echo \"wget \$?\"
		busybox wget -q -O /dev/null --header 'Host: a.test' http://198.51.100.66/ \
			2>/dev/null; echo \"wget-host \$?\"
		busybox nslookup evil.test 203.0.113.99 >/dev/null 2>&1; echo \"nslookup \$?\""
	check "control: static busybox wget http://a.test/ is captured and relayed" \
		"hello from 198.51.100.10 host=a.test" "$(head -n 1 "$tmp/static.out")"
	check "busybox wget of b.test's address, of evil.test's with Host: a.test: both fail" \
		"1 1" "$(out static "wget ") $(out static "wget-host ")"
	check "... the connect events (exe busybox): allowed, then denied by default twice" \
		"198.51.100.10 80 a.test dns allow $P:2 busybox|198.51.100.20 80 - - deny default "`
		`"busybox|198.51.100.66 80 a.test host deny default busybox" \
		"$(jq -r 'select(.event == "connect") | [.dst, .dport, .domain // "-",
			.domain_src // "-", .decision, .rule, (.exe // "" | split("/") | last)]
			| map(tostring) | join(" ")' "$tmp/static.jsonl" | paste -sd'|')"
	check "... only the allowed one reached a server" "tcp 1, udp 0, icmp 0" "$(reached)"
	check "busybox nslookup evil.test 203.0.113.99: fails, dns events denied by line 4" \
		"1|evil.test A deny $P:4 [] []|evil.test AAAA deny $P:4 [] []" \
		"$(out static "nslookup ")|$(dnses static | tr '|' '\n' | grep '^evil' |
			paste -sd'|')"
else
	echo "skip static client: no statically linked busybox (scripts/deps.sh installs" \
		"busybox-static)"
fi

echo "# a daemon: setsid, connecting after its parent exited"
cat >"$tmp/grandchild.sh" <<EOF
# grandchild.sh OUT: started by setsid -f in a session. Waits until its parent has exited (it is
# then the child of the session's init, pid 1), connects, writes what happened to OUT, stays.
i=0
while [ "\$(cut -d' ' -f4 /proc/\$\$/stat)" != 1 ] && [ \$i -lt 100 ]; do
	sleep 0.05; i=\$((i + 1))
done
set -- "\$1" \$(cut -d' ' -f4,6 /proc/\$\$/stat)
curl -s --max-time 5 -o /dev/null http://198.51.100.20/; denied=\$?
allowed=\$(curl -s --max-time 10 http://a.test/)
echo "ppid \$2, own session \$([ "\$3" = \$\$ ] && echo yes || echo no), denied \$denied," \
	"allowed \$allowed" >"\$1.tmp"
mv "\$1.tmp" "\$1"
exec sleep 89$$
EOF
attack daemon "setsid -f sh $tmp/grandchild.sh $tmp/daemon.result
	i=0
	while [ ! -s $tmp/daemon.result ] && [ \$i -lt 300 ]; do sleep 0.05; i=\$((i + 1)); done
	cat $tmp/daemon.result"
result=$(cat "$tmp/daemon.out")
denied=$(echo "$result" | sed -n 's/.*denied \([0-9]*\),.*/\1/p')
check "the daemon (orphaned, own session) connects: denied, while the allowed name answers" \
	"ppid 1, own session yes, denied refused-or-reset, allowed hello from 198.51.100.10"`
	`" host=a.test" \
	"${result/denied $denied,/denied $(fail_kind "${denied:-none}"),}"
check "... both recorded; only the allowed one reached a server" \
	"198.51.100.20 80 - - deny default|198.51.100.10 80 a.test dns allow $P:2|tcp 1, udp 0,"`
	`" icmp 0" "$(connects daemon)|$(reached)"
check "... one line on stderr" "sluice: denied tcp 198.51.100.20:80 by default" "$(said daemon)"
check "... and it is gone with the session" "" "$(pgrep -f "^sleep 89$$\$" || true)"

echo "# unshare and setns (test_escape.sh has the rest)"
attack escape "unshare -n curl -s --max-time 5 http://198.51.100.20/ 2>&1 | sed 's/^/unshare: /'
	nsenter --net=/run/netns/$WORLD_NS curl -s --max-time 5 http://198.51.100.20/ 2>&1 |
		sed 's/^/nsenter: /'
	curl -s --max-time 5 -o /dev/null http://198.51.100.20/; echo \"curl \$?\""
check "unshare -n, nsenter into sluice's namespace: refused; then the connection is denied" \
	"unshare: unshare: unshare failed: Operation not permitted|nsenter: nsenter: reassociate"`
	`" to namespace 'ns/net' failed: Operation not permitted|refused-or-reset $nothing" \
	"$(grep -m 1 '^unshare: ' "$tmp/escape.out")|$(
		grep -m 1 '^nsenter: ' "$tmp/escape.out")|$(fail_kind "$(out escape "curl ")") $(
		reached)"
check "... and recorded" "198.51.100.20 80 - - deny default" "$(connects escape)"

echo "# straight to sluice's own listeners"
cat >"$tmp/listeners.py" <<'EOF'
# listeners.py: finds the sockets listening in the session (/proc/net/{tcp,udp}{,6}: sluice's
# listeners), sends each, all at once, an HTTP request for b.test (TCP) or a DNS query for
# evil.test (UDP), and prints "KIND ADDR:PORT N" for each: the bytes that came back in 2 s.
import select, socket, struct, time

def listening(kind, state):
    found = []
    for fam, f in ((socket.AF_INET, kind), (socket.AF_INET6, kind + "6")):
        for line in open("/proc/net/" + f).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] != state:
                continue
            addr, port = cols[1].split(":")
            raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, len(addr), 8))
            found.append((kind, fam, socket.inet_ntop(fam, raw), int(port, 16)))
    return sorted(set(found))

http = b"GET / HTTP/1.0\r\nHost: b.test\r\n\r\n"
query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x04evil\x04test\x00" + \
    struct.pack("!HH", 1, 1)
got, open_, unsent = {}, {}, set()
for kind, fam, addr, port in listening("tcp", "0A") + listening("udp", "07"):
    name = "%s %s:%d" % (kind, "[%s]" % addr if fam == socket.AF_INET6 else addr, port)
    s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.setblocking(False)
    got[name], open_[s] = 0, name
    try:
        if kind == "tcp":
            s.connect_ex((addr, port))
            unsent.add(s)
        else:
            s.sendto(query, (addr, port))
    except OSError:
        pass
end = time.monotonic() + 2
while open_ and time.monotonic() < end:
    r, w, _ = select.select(list(open_), list(unsent), [], max(0, end - time.monotonic()))
    for s in w:
        unsent.discard(s)
        try:
            s.send(http)
        except OSError:
            pass
    for s in r:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        got[open_[s]] += len(data)
        if not data:
            unsent.discard(s)
            del open_[s]
for name in sorted(got):
    print(name, got[name])
EOF
attack listeners "python3 $tmp/listeners.py"
check "sluice's listeners are found in the session (TCP and UDP)" "tcp yes udp yes" \
	"tcp $(grep -q '^tcp ' "$tmp/listeners.out" && echo yes || echo no) udp $(
		grep -q '^udp ' "$tmp/listeners.out" && echo yes || echo no)"
echo "     ($(cut -d' ' -f1,2 "$tmp/listeners.out" | oneline))"
check "... a request sent straight to each: nothing comes back, nothing reached a server" \
	"0 bytes $nothing" \
	"$(awk '{ n += $3 } END { print n + 0 " bytes" }' "$tmp/listeners.out") $(reached)"
check "... nothing was decided or relayed: no event" "" "$(decisions listeners)"

echo "# proxy variables and LD_PRELOAD"
libc=$(ldd "$(command -v curl)" | awk '$1 ~ /^libc\.so/ { print $3 }')
attack proxy "http_proxy=http://198.51.100.66:80 HTTPS_PROXY=http://198.51.100.66:80 \
	ALL_PROXY=socks5h://198.51.100.66:1080 curl -s --max-time 5 -o /dev/null http://a.test/
	echo \"curl \$?\""
check "http_proxy at evil.test's address, asked for http://a.test/: denied" \
	"refused-or-reset $nothing" "$(fail_kind "$(out proxy "curl ")") $(reached)"
check "... connect event: the proxy's address, the request's name, unresolved" \
	"198.51.100.66 80 a.test host deny default" "$(connects proxy)"
check "... one line on stderr" \
	"sluice: denied tcp 198.51.100.66:80 (a.test, not resolved by the session) by default" \
	"$(said proxy)"
attack preload "env http_proxy=http://198.51.100.40:80 ALL_PROXY=socks5h://198.51.100.40:1080 \
	NO_PROXY='*' LD_PRELOAD=$libc curl -s --max-time 5 -o /dev/null http://198.51.100.20/
	echo \"curl \$?\""
check "proxy variables, NO_PROXY=* and LD_PRELOAD=$libc set: b.test's address still denied" \
	"refused-or-reset $nothing|198.51.100.20 80 - - deny default|"`
	`"sluice: denied tcp 198.51.100.20:80 by default" \
	"$(fail_kind "$(out preload "curl ")") $(reached)|$(connects preload)|$(said preload)"

echo "# nothing is left behind"
check "no sanitizer report on any session's stderr" "" \
	"$(grep -l -e 'Sanitizer' -e 'runtime error' "$tmp"/*.err | oneline || true)"
check "the world's nftables ruleset is empty" "" "$(in_world nft list ruleset)"
check "the host's nftables ruleset is unchanged" "$(cat "$tmp/host-nft.before")" \
	"$(nft list ruleset)"

checks_done
