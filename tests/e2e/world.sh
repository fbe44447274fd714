# world.sh — a private test world for `sluice run`: two network namespaces and real servers.
# shellcheck shell=bash disable=SC2034  # a library: its variables are read by the sourcing script
# Sourced by tests/e2e/test_run.sh and scripts/demo.sh (bash); needs root.
#
#   the machine's own namespace: never changed (only /etc/netns/sluice-world-PID/resolv.conf
#   is written, for `ip netns exec` to bind-mount over /etc/resolv.conf inside the world)
#
#   ┌─ sluice-world-PID ─────────────────────┐      ┌─ sluice-srv-PID ─────────────────────────────┐
#   │ sluice run ... -- COMMAND              │      │ lo  198.51.100.10  2001:db8:2::10   a.test   │
#   │  └─ session namespace (sluice's own):  │      │     198.51.100.20                   b.test   │
#   │     lo only, COMMAND and its children, │      │     198.51.100.30      wild.test, *.wild.test│
#   │     every flow captured by sluice      │      │     198.51.100.40      (no name)             │
#   │ resolv.conf: nameserver 203.0.113.53   │      │     198.51.100.66      evil.test             │
#   │                                        │      │     203.0.113.53  2001:db8:2::53  dnsmasq    │
#   │ veth w0 192.0.2.1/24 2001:db8:1::1/64 ─┼──────┼─ veth s0 192.0.2.2/24 2001:db8:1::2/64       │
#   │ default via 192.0.2.2 / 2001:db8:1::2  │      │ default via 192.0.2.1 / 2001:db8:1::1        │
#   └────────────────────────────────────────┘      └──────────────────────────────────────────────┘
#
#   Services in sluice-srv-PID (servers.py, dnsmasq, one nft table):
#     TCP 80   HTTP on every address: "hello from ADDR host=HOST", GET /big the big file
#     TCP 443  HTTPS, certificate for a.test b.test *.wild.test 198.51.100.10 from a fresh CA
#              (WORLD_DIR/ca.pem); the body adds "sni=NAME"
#     UDP 7    echo on 198.51.100.10, 198.51.100.20, 2001:db8:2::10: "echo X from ADDR"
#     UDP 443  echo on 198.51.100.10, 198.51.100.20 (socat): "udp443 X from ADDR"
#     TCP 81   on 198.51.100.10: nothing listens (refused)
#     TCP 82   on 198.51.100.10 / 2001:db8:2::10: dropped (a blackhole)
#     UDP/TCP 53 on 203.0.113.53, 2001:db8:2::53: dnsmasq, authoritative for the names above
#              only (everything else REFUSED), queries logged to WORLD_DIR/dnsmasq.log; also
#              names for the rebinding guard, pointing where no server lives: rebind.test
#              10.0.0.5, meta.test 169.254.169.254, loop.test 127.0.0.1, mapped.test AAAA
#              ::ffff:127.0.0.1, nat64.test AAAA 64:ff9b::a00:5, mixed.test 198.51.100.10
#              and 10.0.0.5 and 169.254.169.254
#     203.0.113.54: a resolver that never answers (everything to it dropped)
#
# Functions:
#   world_up DIR [BIG_MIB]   build the world; DIR (existing, empty) receives certificates, logs
#                            and the big file (BIG_MIB MiB of random bytes, default 50)
#   world_down               remove everything world_up made (safe to call more than once)
#   world_sweep              remove worlds of earlier runs whose PID is gone (world_up calls it)
#   in_world CMD...          run CMD in the world namespace (where sluice runs)
#   in_servers CMD...        run CMD in the servers namespace
#   poll TRIES CMD...        run CMD every 0.1 s until it succeeds, at most TRIES times
#   poll_file FILE TEXT [TRIES]  wait until FILE contains TEXT (default 100 tries, 10 s)
# Variables: WORLD_NS, SRV_NS, WORLD_DIR, WORLD_BIG (path), WORLD_BIG_SHA256, WORLD_PIDS.

WORLD_NS=sluice-world-$$
SRV_NS=sluice-srv-$$
WORLD_DIR=
WORLD_BIG=
WORLD_BIG_SHA256=
WORLD_PIDS=()
WORLD_NAMES=""  # what world_down removes: "ns" and/or "etc" once created

in_world() {
	ip netns exec "$WORLD_NS" "$@"
}

in_servers() {
	ip netns exec "$SRV_NS" "$@"
}

poll() {
	local tries=$1 i=0
	shift
	until "$@"; do
		i=$((i + 1))
		[ "$i" -lt "$tries" ] || return 1
		sleep 0.1
	done
}

poll_file() {
	poll "${3:-100}" grep -q -- "$2" "$1" 2>/dev/null
}

# A CA and a server certificate signed by it, into WORLD_DIR.
world_certs() {
	local d=$WORLD_DIR
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=sluice test world CA" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=a.test" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf '%s\n' "basicConstraints=CA:FALSE" \
		"subjectAltName=DNS:a.test,DNS:b.test,DNS:*.wild.test,IP:198.51.100.10" \
		>"$d/server.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
}

# Starts CMD... in the background in the servers namespace, output to LOG; records its PID
# (ip netns exec execs CMD, so $! is CMD's own PID).
world_spawn() {
	local log=$1
	shift
	ip netns exec "$SRV_NS" "$@" </dev/null >"$log" 2>&1 &
	WORLD_PIDS+=("$!")
}

# Removes the worlds of earlier runs killed before their cleanup could run (SIGKILL, a CTest
# timeout): namespaces named after a PID that no longer exists, and the servers left in them.
world_sweep() {
	local ns pid left
	for ns in $(ip netns list | awk '{print $1}' | grep -xE 'sluice-(world|srv)-[0-9]+'); do
		pid=${ns##*-}
		if [ "$pid" = $$ ] || kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		echo "world.sh: removing $ns, left behind by an earlier run" >&2
		for left in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$left" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
	done
}

world_up() {
	WORLD_DIR=$1
	local mib=${2:-50}
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

	world_sweep
	WORLD_NAMES="ns"
	ip netns add "$WORLD_NS"
	ip netns add "$SRV_NS"
	ip link add w0 netns "$WORLD_NS" type veth peer s0 netns "$SRV_NS"

	ip -n "$WORLD_NS" link set lo up
	ip -n "$WORLD_NS" addr add 192.0.2.1/24 dev w0
	ip -n "$WORLD_NS" addr add 2001:db8:1::1/64 dev w0 nodad
	ip -n "$WORLD_NS" link set w0 up
	ip -n "$WORLD_NS" route add default via 192.0.2.2
	ip -n "$WORLD_NS" -6 route add default via 2001:db8:1::2

	ip -n "$SRV_NS" link set lo up
	local a
	for a in 198.51.100.10 198.51.100.20 198.51.100.30 198.51.100.40 198.51.100.66 \
		203.0.113.53 203.0.113.54; do
		ip -n "$SRV_NS" addr add "$a/32" dev lo
	done
	for a in 2001:db8:2::10 2001:db8:2::53; do
		ip -n "$SRV_NS" addr add "$a/128" dev lo
	done
	ip -n "$SRV_NS" addr add 192.0.2.2/24 dev s0
	ip -n "$SRV_NS" addr add 2001:db8:1::2/64 dev s0 nodad
	ip -n "$SRV_NS" link set s0 up
	ip -n "$SRV_NS" route add default via 192.0.2.1
	ip -n "$SRV_NS" -6 route add default via 2001:db8:1::1
	in_servers nft -f - <<-'EOF'
		table inet world {
			chain input {
				type filter hook input priority 0; policy accept;
				ip daddr 198.51.100.10 tcp dport 82 drop
				ip6 daddr 2001:db8:2::10 tcp dport 82 drop
				ip daddr 203.0.113.54 drop
			}
		}
	EOF

	WORLD_NAMES="ns etc"
	mkdir -p "/etc/netns/$WORLD_NS"
	printf 'nameserver 203.0.113.53\noptions timeout:2 attempts:1\n' \
		>"/etc/netns/$WORLD_NS/resolv.conf"

	world_certs
	WORLD_BIG=$WORLD_DIR/big.bin
	head -c $((mib * 1024 * 1024)) /dev/urandom >"$WORLD_BIG"
	WORLD_BIG_SHA256=$(sha256sum <"$WORLD_BIG" | cut -d' ' -f1)

	world_spawn "$WORLD_DIR/dnsmasq.out" dnsmasq --keep-in-foreground --conf-file=/dev/null \
		--no-resolv --no-hosts --pid-file --user=root --bind-interfaces \
		--listen-address=203.0.113.53 --listen-address=2001:db8:2::53 \
		--log-queries --log-facility="$WORLD_DIR/dnsmasq.log" --local-ttl=300 \
		--host-record=a.test,198.51.100.10,2001:db8:2::10 \
		--host-record=b.test,198.51.100.20 \
		--host-record=evil.test,198.51.100.66 \
		--address=/wild.test/198.51.100.30 \
		--host-record=rebind.test,10.0.0.5 \
		--host-record=meta.test,169.254.169.254 \
		--host-record=loop.test,127.0.0.1 \
		--host-record=mapped.test,::ffff:127.0.0.1 \
		--host-record=nat64.test,64:ff9b::a00:5 \
		--host-record=mixed.test,198.51.100.10 \
		--host-record=mixed.test,10.0.0.5 \
		--host-record=mixed.test,169.254.169.254
	world_spawn "$WORLD_DIR/servers.out" python3 "$here/servers.py" --big "$WORLD_BIG" \
		--cert "$WORLD_DIR/server.pem" --key "$WORLD_DIR/server.key" \
		--udp 198.51.100.10 --udp 198.51.100.20 --udp 2001:db8:2::10
	# UDP 443 (where QUIC goes): one socat per address, so that replies leave from it.
	for a in 198.51.100.10 198.51.100.20; do
		world_spawn "$WORLD_DIR/udp443-$a.out" socat "UDP4-RECVFROM:443,bind=$a,fork" \
			SYSTEM:"echo \"udp443 \$(cat) from $a\""
	done

	if ! poll_file "$WORLD_DIR/servers.out" ready ||
	   ! poll 100 world_resolves || ! poll 100 world_udp443; then
		echo "world.sh: the servers did not come up:" >&2
		cat "$WORLD_DIR/servers.out" "$WORLD_DIR/dnsmasq.out" "$WORLD_DIR"/udp443-*.out >&2
		return 1
	fi
}

world_resolves() {
	[ "$(in_servers dig @203.0.113.53 +time=1 +tries=1 +short a.test 2>/dev/null)" \
		= 198.51.100.10 ]
}

world_udp443() {
	[ "$(in_servers ss -Hlun 'sport = :443' | wc -l)" = 2 ]
}

world_down() {
	local pid left
	# The servers keep no state worth a graceful stop; KILL cannot be ignored, so wait returns.
	for pid in "${WORLD_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	WORLD_PIDS=()
	case $WORLD_NAMES in *ns*)
		# Whatever still runs in our two namespaces was started by us (or by sluice for us).
		for left in $(ip netns pids "$WORLD_NS" 2>/dev/null) \
			    $(ip netns pids "$SRV_NS" 2>/dev/null); do
			kill -KILL "$left" 2>/dev/null || true
		done
		ip netns del "$WORLD_NS" 2>/dev/null || true
		ip netns del "$SRV_NS" 2>/dev/null || true
		;;
	esac
	case $WORLD_NAMES in *etc*)
		rm -rf "/etc/netns/$WORLD_NS"
		;;
	esac
	WORLD_NAMES=""
}
