# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# lib.sh: names and helpers shared by the testhosts scripts (sourced, not run).
#
# Configuration (environment):
#   TESTHOSTS_CACHE   cache dir (default ${CLUSTERCTL_CACHE:-/var/cache/clusterctl}/testhosts)
#   TESTHOSTS_NET     first three octets of the hosts' /24 (default 172.31.0); hN is at $NET.(10+N)
#   TESTHOSTS_PREFIX  name prefix of bridge, veths, netns and cgroups (default th), so runs never collide
#   TESTHOSTS_MAX     every host's /etc/hosts lists h1..hMAX (default 9)
#   TESTHOSTS_RELEASE Debian release of the hosts: trixie (13, default) or bookworm (12)

TH_CACHE=${TESTHOSTS_CACHE:-${CLUSTERCTL_CACHE:-/var/cache/clusterctl}/testhosts}
TH_NET=${TESTHOSTS_NET:-172.31.0}
TH_PREFIX=${TESTHOSTS_PREFIX:-th}
TH_MAX=${TESTHOSTS_MAX:-9}
TH_RELEASE=${TESTHOSTS_RELEASE:-trixie}
TH_ROOTFS=$TH_CACHE/rootfs-$TH_RELEASE
TH_STAMP=$TH_ROOTFS.stamp # written last by make-rootfs.sh; outside the rootfs so hosts do not see it
TH_KEY=$TH_CACHE/keys/id_ed25519
TH_RUN=$TH_CACHE/runs/$TH_PREFIX
TH_BR=${TH_PREFIX}br0
TH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

th_die() { echo "testhosts: $*" >&2; exit 1; }
th_log() { echo "testhosts: $*" >&2; }

th_check() {
	[ "$(id -u)" = 0 ] || th_die "must run as root"
	case $TH_RELEASE in bookworm | trixie) ;; *) th_die "release '$TH_RELEASE': want bookworm or trixie" ;; esac
	[[ $TH_PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] || th_die "prefix '$TH_PREFIX': want 1-10 of [a-z0-9], starting with a letter (interface names are limited to 15 chars)"
	[[ $TH_NET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || th_die "net '$TH_NET': want three octets, e.g. 172.31.0"
	local o; for o in "${BASH_REMATCH[@]:1}"; do ((o <= 255)) || th_die "net '$TH_NET': octet $o > 255"; done
}

th_index() { [[ $1 =~ ^[1-9][0-9]?$ ]] || th_die "host number '$1': want 1..99"; }
th_addr() { echo "$TH_NET.$((10 + $1))"; }
th_ns() { echo "$TH_PREFIX-h$1"; }
th_cg() { echo "$TH_PREFIX-h$1"; }
th_veth() { echo "${TH_PREFIX}h$1"; }
th_hostdir() { echo "$TH_RUN/h$1"; }

# th_mac LAST: a fixed, locally administered MAC 02:42:<net octets>:<LAST>. Fixed MACs keep the peers' ARP
# entries valid across a host's reboot (random MACs leave them stale for ~30 s).
th_mac() {
	local a b c
	IFS=. read -r a b c <<<"$TH_NET"
	printf '02:42:%02x:%02x:%02x:%02x\n' "$a" "$b" "$c" "$1"
}

th_cgv2() { [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; }

# th_cgroots: the cgroup hierarchies a host's processes join (v1 hybrid: every mounted hierarchy).
th_cgroots() {
	if th_cgv2; then echo /sys/fs/cgroup; else
		local d; for d in /sys/fs/cgroup/*/; do mountpoint -q "$d" && echo "${d%/}"; done
	fi
}

# th_launcher_pid N: pid of the host's `unshare` (its only child is the host's PID 1), if still running.
th_launcher_pid() {
	local f lp
	f=$(th_hostdir "$1")/launcher.pid
	[ -f "$f" ] || return 1
	lp=$(cat "$f")
	[ -n "$lp" ] && grep -qa unshare "/proc/$lp/cmdline" 2>/dev/null && echo "$lp"
}

# th_init_pid N: the machine's pid of the host's PID 1 (systemd).
th_init_pid() {
	local lp c
	lp=$(th_launcher_pid "$1") || return 1
	c=$(cat "/proc/$lp/task/$lp/children" 2>/dev/null) || return 1
	c=${c%% *}
	[ -n "$c" ] && echo "$c"
}

# th_cg_pids N: every process in the host's cgroups (also stray ones of a crashed run).
th_cg_pids() {
	local r
	for r in $(th_cgroots); do
		[ -d "$r/$(th_cg "$1")" ] && find "$r/$(th_cg "$1")" -name cgroup.procs -exec cat {} + 2>/dev/null
	done | sort -u
}

# th_thaw N: a frozen process cannot die, so thaw before any kill.
th_thaw() {
	local cg; cg=$(th_cg "$1")
	if [ -f "/sys/fs/cgroup/freezer/$cg/freezer.state" ]; then
		echo THAWED >"/sys/fs/cgroup/freezer/$cg/freezer.state" 2>/dev/null || true
	elif [ -f "/sys/fs/cgroup/$cg/cgroup.freeze" ]; then
		echo 0 >"/sys/fs/cgroup/$cg/cgroup.freeze" 2>/dev/null || true
	fi
}

# th_known_hosts: the hosts of this run, one number a line (run dir, netns, veths and cgroups alike).
th_known_hosts() {
	{
		local d
		for d in "$TH_RUN"/h*/; do [ -d "$d" ] && basename "$d"; done | sed -n 's/^h\([0-9]\+\)$/\1/p'
		ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^$TH_PREFIX-h\([0-9]\+\)$/\1/p"
		ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sed -n "s/^${TH_PREFIX}h\([0-9]\+\)$/\1/p"
		for d in /sys/fs/cgroup/*/"$TH_PREFIX"-h* /sys/fs/cgroup/"$TH_PREFIX"-h*; do [ -d "$d" ] && basename "$d"; done |
			sed -n "s/^$TH_PREFIX-h\([0-9]\+\)$/\1/p"
	} | sort -nu
}

# th_mirror: the URI of this machine's apt source for bookworm (deb822 .sources first, then one-line .list files);
# the same archive serves trixie.
# Falls back to the first Debian source that is not a security one. Never hard-code a mirror here.
th_mirror() {
	if [ -n "${TESTHOSTS_MIRROR:-}" ]; then echo "$TESTHOSTS_MIRROR"; return; fi
	local f m want
	for want in bookworm any; do
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			m=$(awk -v want="$want" 'BEGIN { RS = ""; FS = "\n" }
				{ u = ""; s = ""; t = ""; on = 1
				  for (i = 1; i <= NF; i++) {
				    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
				    if ($i ~ /^Suites:/) s = " " substr($i, 8) " "
				    if ($i ~ /^Types:/) t = " " substr($i, 7) " "
				    if ($i ~ /^Enabled:[ \t]*[Nn]o/) on = 0
				  }
				  gsub(/\t/, " ", s); gsub(/\t/, " ", t)
				  if (!on || u == "" || t !~ / deb /) next
				  if (want == "bookworm" && s ~ / bookworm /) { print u; exit }
				  if (want == "any" && u !~ /security/ && s !~ /security/) { print u; exit } }' "$f")
			[ -n "$m" ] && { echo "$m"; return; }
		done
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			m=$(awk -v want="$want" '$1 == "deb" { i = 2
				  if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				  if (want == "bookworm" && $(i + 1) == "bookworm") { print $i; exit }
				  if (want == "any" && $i !~ /security/ && $(i + 1) !~ /security/) { print $i; exit } }' "$f")
			[ -n "$m" ] && { echo "$m"; return; }
		done
	done
	th_die "no Debian mirror in /etc/apt/sources.list{,.d}: set TESTHOSTS_MIRROR"
}
