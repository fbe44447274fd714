/* default_policy.c — the built-in policy: the text `sluice policy --default` prints and runs. */
#include "policy/policy.h"

#include <string.h>

/* Kept in the policy language itself, so that what sluice prints is exactly what it enforces.
 * tests/unit/test_policy.c parses it and checks the decisions its comments promise. */
static const char default_policy[] =
	"# sluice built-in policy: package registries and code hosts over HTTP(S), nothing else.\n"
	"#\n"
	"# First matching rule wins. Addresses that never belong to a public server come\n"
	"# first, so that no name can lead there: a DNS answer or a TLS server name pointing\n"
	"# into them is still denied. Then a short list of registries on ports 80 and 443\n"
	"# (TCP only: QUIC is refused and clients fall back to TCP). Everything else is\n"
	"# denied, DNS included.\n"
	"# To start your own policy: sluice policy --default > policy.rules\n"
	"\n"
	"# Loopback, 'this network', and the unspecified address.\n"
	"deny cidr 127.0.0.0/8\n"
	"deny cidr ::1/128\n"
	"deny cidr 0.0.0.0/8\n"
	"deny cidr ::/128\n"
	"# Private networks (RFC 1918), IPv6 unique local (AWS metadata is fd00:ec2::254).\n"
	"deny cidr 10.0.0.0/8\n"
	"deny cidr 172.16.0.0/12\n"
	"deny cidr 192.168.0.0/16\n"
	"deny cidr fc00::/7\n"
	"# Link-local, which holds the cloud metadata service 169.254.169.254.\n"
	"deny cidr 169.254.0.0/16\n"
	"deny cidr fe80::/10\n"
	"# Carrier-grade NAT (RFC 6598), shared by the subscribers of one provider.\n"
	"deny cidr 100.64.0.0/10\n"
	"# IETF protocol assignments (Oracle Cloud metadata 192.0.0.192), benchmarking networks.\n"
	"deny cidr 192.0.0.0/24\n"
	"deny cidr 198.18.0.0/15\n"
	"# Multicast, reserved, broadcast; IPv6 site-local (deprecated), multicast, discard.\n"
	"deny cidr 224.0.0.0/4\n"
	"deny cidr 240.0.0.0/4\n"
	"deny cidr fec0::/10\n"
	"deny cidr ff00::/8\n"
	"deny cidr 100::/64\n"
	"\n"
	"# JavaScript: npm and Yarn.\n"
	"allow domain registry.npmjs.org port 80,443 proto tcp\n"
	"allow domain registry.yarnpkg.com,repo.yarnpkg.com port 80,443 proto tcp\n"
	"# Python: the index and the files it points to.\n"
	"allow domain pypi.org,files.pythonhosted.org port 80,443 proto tcp\n"
	"# Rust: crates.io, its sparse index and its downloads.\n"
	"allow domain crates.io,index.crates.io,static.crates.io port 80,443 proto tcp\n"
	"# Go: the module proxy and the checksum database.\n"
	"allow domain proxy.golang.org,sum.golang.org port 80,443 proto tcp\n"
	"# Ruby: RubyGems and its compact index.\n"
	"allow domain rubygems.org,index.rubygems.org port 80,443 proto tcp\n"
	"# Java: Maven Central.\n"
	"allow domain repo.maven.apache.org,repo1.maven.org port 80,443 proto tcp\n"
	"# Debian packages and security updates.\n"
	"allow domain deb.debian.org,security.debian.org port 80,443 proto tcp\n"
	"# GitHub: web and git over HTTPS, the API, archives, release assets and raw files.\n"
	"allow domain github.com,api.github.com,codeload.github.com port 80,443 proto tcp\n"
	"allow domain objects.githubusercontent.com,raw.githubusercontent.com port 80,443 "
	"proto tcp\n"
	"# GitLab.\n"
	"allow domain gitlab.com port 80,443 proto tcp\n"
	"\n"
	"default deny\n";

const char *policy_default_text(void)
{
	return default_policy;
}

int policy_load_default(struct policy **out)
{
	return policy_parse(out, POLICY_BUILTIN_NAME, default_policy, strlen(default_policy),
			    NULL);
}
