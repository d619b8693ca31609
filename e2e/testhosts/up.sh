#!/bin/bash
# up.sh N...: boot namespace test hosts hN (at $TESTHOSTS_NET.(10+N)) on bridge ${TESTHOSTS_PREFIX}br0.
# A host booted again keeps its disk (the overlay upper dir under the run dir). Returns once the hosts are
# launched; wait-ssh.sh waits until their sshd accepts the test key. Needs make-rootfs.sh to have run.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check
[ $# -gt 0 ] || th_die "usage: up.sh N..."
[ -f "$TH_STAMP" ] || th_die "no rootfs at $TH_ROOTFS: run make-rootfs.sh first"

bridge_up() {
	if ! ip link show "$TH_BR" >/dev/null 2>&1; then
		local used
		used=$(ip -4 -o addr show | awk -v n="$TH_NET." 'index($4, n) == 1 {print $2}')
		[ -z "$used" ] || th_die "subnet $TH_NET.0/24 is already used by interface $used: pick another net"
		ip link add "$TH_BR" address "$(th_mac 1)" type bridge
		ip addr add "$TH_NET.1/24" dev "$TH_BR"
		ip link set "$TH_BR" up
	fi
	# With br_netfilter, bridged frames traverse the FORWARD chain, whose policy may be DROP (e.g. Docker).
	if command -v iptables >/dev/null && ! iptables -w -C FORWARD -i "$TH_BR" -o "$TH_BR" -j ACCEPT 2>/dev/null; then
		iptables -w -I FORWARD -i "$TH_BR" -o "$TH_BR" -j ACCEPT
	fi
}

# inotify_room: every host shares the machine's inotify limits (root in the initial user namespace), and
# Debian's fs.inotify.max_user_instances (128) is gone at about two Kubernetes clusters of test hosts
# (systemd takes ~14 instances a host, kubelet, containerd, kube-proxy and flannel more). Then a restarted
# kubelet dies with "inotify_init: too many open files" (its Node stays NotReady), kube-proxy crash-loops,
# and a booting host's systemd never starts sshd. Raised to kind's advice and beyond, never lowered.
inotify_room() {
	local key want have
	for key in max_user_instances:8192 max_user_watches:524288; do
		want=${key#*:}; key=fs.inotify.${key%:*}
		have=$(sysctl -n "$key")
		if [ "$have" -lt "$want" ]; then
			th_log "raising $key $have -> $want (machine-wide: shared by every test host; left raised)"
			sysctl -qw "$key=$want" || th_die "raise $key: the hosts would run out of inotify instances"
		fi
	done
}

host_up() {
	local i=$1 h ns veth cg r fs
	th_index "$i"
	h=$(th_hostdir "$i"); ns=$(th_ns "$i"); veth=$(th_veth "$i"); cg=$(th_cg "$i")
	! th_launcher_pid "$i" >/dev/null || th_die "h$i is already running"
	# Leftovers of a power cut that down.sh did not clean up.
	if ip netns list | awk '{print $1}' | grep -qx "$ns"; then ip netns del "$ns"; fi
	for _ in $(seq 50); do ip link show "$veth" >/dev/null 2>&1 || break; sleep 0.1; done
	ip link del "$veth" 2>/dev/null || true

	mkdir -p "$h/upper" "$h/work" "$h/root" "$h/data/containerd" "$h/data/kubelet" "$h/data/etcd"
	fs=$(stat -fc %T "$h")
	[ "$fs" != overlayfs ] || th_die "$h is on overlayfs: set TESTHOSTS_CACHE to a plain filesystem (ext4, xfs)"

	ip netns add "$ns"
	# Fixed MAC inside: the peers' ARP entries stay valid across this host's reboots.
	ip link add "$veth" type veth peer name eth0 address "$(th_mac $((10 + i)))" netns "$ns"
	ip link set "$veth" master "$TH_BR" up
	ip -n "$ns" addr add "$(th_addr "$i")/24" dev eth0
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$TH_NET.1"

	for r in $(th_cgroots); do mkdir -p "$r/$cg"; done
	if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
		cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$cg/cpuset.cpus"
		cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$cg/cpuset.mems"
	fi
	if th_cgv2; then sed 's/[^ ]*/+&/g' /sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true; fi

	# The launcher joins the host's cgroups (so the freezer and cleanup reach every process of the host), then
	# becomes `unshare`, whose child is the host's PID 1. setsid: it survives this script and its caller.
	# shellcheck disable=SC2016 # the single-quoted script is expanded by the launcher
	env TH_I="$i" TH_HOSTDIR="$h" TH_ROOTFS="$TH_ROOTFS" TH_RELEASE="$TH_RELEASE" TH_NET="$TH_NET" TH_MAX="$TH_MAX" \
		TH_CG="$cg" TH_NS="$ns" TH_INIT="$TH_DIR/init.sh" TH_CGROOTS="$(th_cgroots | tr '\n' ' ')" \
		TH_CGV2="$(th_cgv2 && echo 1 || echo 0)" \
		TH_CGMOUNTS="$(findmnt -rn -t cgroup -o FS-OPTIONS | sed 's/^rw,//' | tr '\n' ' ')" \
		setsid bash -c 'for r in $TH_CGROOTS; do echo $$ >"$r/$TH_CG/cgroup.procs"; done
			exec ip netns exec "$TH_NS" unshare --mount --uts --ipc --pid --cgroup --fork --propagation private "$TH_INIT"' \
		>"$h/console.log" 2>&1 </dev/null &
	echo $! >"$h/launcher.pid"
	echo "h$i $(th_addr "$i") booting"
}

mkdir -p "$TH_RUN"
inotify_room
bridge_up
for i in "$@"; do host_up "$i"; done
