#!/bin/bash
# down.sh [--kill] N...     clean shutdown of hosts hN (SIGRTMIN+3 to systemd), or a power cut with --kill.
#                           Their disks (overlay upper dirs) are kept: up.sh N boots them again.
# down.sh --all [--purge]   power-cut every host of this prefix (also leftovers of a crashed run), remove the
#                           bridge and its iptables rule; --purge also deletes the run dir (the hosts' disks).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check

KILL=0 ALL=0 PURGE=0
while [ $# -gt 0 ]; do
	case $1 in
	--kill) KILL=1 ;;
	--all) ALL=1 KILL=1 ;;
	--purge) PURGE=1 ;;
	--) shift; break ;;
	-*) th_die "unknown flag $1" ;;
	*) break ;;
	esac
	shift
done

# alive PID: running, not a zombie (the launcher's parent may be a PID 1 that reaps only every second or so).
alive() { [ -n "$(awk '/^State:/ && $2 != "Z" {print}' "/proc/$1/status" 2>/dev/null)" ]; }

# gone PID TENTHS: wait until PID has exited.
gone() {
	local n
	for ((n = 0; n < $2 * 4; n++)); do alive "$1" || return 0; sleep 0.025; done
	! alive "$1"
}

host_down() {
	local i=$1 lp init ns veth cg r pids n
	th_index "$i"
	ns=$(th_ns "$i"); veth=$(th_veth "$i"); cg=$(th_cg "$i")
	th_thaw "$i" # a frozen process cannot even die
	if lp=$(th_launcher_pid "$i"); then
		init=$(th_init_pid "$i" || true)
		if [ $KILL = 0 ] && [ -n "$init" ]; then
			kill -s RTMIN+3 "$init" 2>/dev/null || true
			gone "$lp" "${TESTHOSTS_STOP_TENTHS:-600}" || th_log "h$i did not shut down in time: power cut"
		fi
		if [ -n "$init" ]; then kill -9 "$init" 2>/dev/null || true; fi
		kill -9 "$lp" 2>/dev/null || true # it only waits for init; also covers a launcher caught before unshare
		gone "$lp" 100 || th_log "h$i: launcher $lp still alive"
	fi
	# Whatever is left: processes of a crashed run, or nsenter'd ones that did not join the pid namespace.
	for n in 1 2 3; do
		pids=$( { th_cg_pids "$i"; ip netns pids "$ns" 2>/dev/null || true; } | sort -u)
		[ -n "$pids" ] || break
		th_thaw "$i"
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null || true
		sleep 0.2
	done
	rm -f "$(th_hostdir "$i")/launcher.pid"
	if ip netns list | awk '{print $1}' | grep -qx "$ns"; then ip netns del "$ns" 2>/dev/null || true; fi
	# The kernel frees the veth asynchronously once the namespace is gone.
	for _ in $(seq 50); do ip link show "$veth" >/dev/null 2>&1 || break; sleep 0.1; done
	ip link del "$veth" 2>/dev/null || true
	for r in $(th_cgroots); do
		[ -d "$r/$cg" ] || continue
		for _ in $(seq 20); do
			find "$r/$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$r/$cg" ] || break
			sleep 0.1
		done
		[ ! -d "$r/$cg" ] || th_log "h$i: cannot remove cgroup $r/$cg"
	done
	echo "h$i down"
}

if [ $ALL = 1 ]; then
	[ $# = 0 ] || th_die "--all takes no host numbers"
	mapfile -t hosts < <(th_known_hosts)
	pids=()
	for i in "${hosts[@]}"; do host_down "$i" & pids+=($!); done
	for p in "${pids[@]}"; do wait "$p" || true; done
	if command -v iptables >/dev/null; then
		while iptables -w -C FORWARD -i "$TH_BR" -o "$TH_BR" -j ACCEPT 2>/dev/null; do
			iptables -w -D FORWARD -i "$TH_BR" -o "$TH_BR" -j ACCEPT
		done
	fi
	ip link del "$TH_BR" 2>/dev/null || true
	if [ $PURGE = 1 ]; then rm -rf "$TH_RUN"; fi
	exit 0
fi
[ $# -gt 0 ] || th_die "usage: down.sh [--kill] N... | down.sh --all [--purge]"
pids=()
for i in "$@"; do host_down "$i" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
