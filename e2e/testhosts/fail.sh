#!/bin/bash
# fail.sh ACTION N...: failure injection on running hosts.
#   pause N       freeze every process of hN (cgroup freezer): TCP still connects (the kernel answers the
#                 handshake), but nothing answers on it. resume N thaws it.
#   disconnect N  pull hN's network cable (machine side of its veth down). reconnect N plugs it back.
# Power cut and reboot: down.sh --kill N, then up.sh N. Service down: exec.sh N 'systemctl stop ssh'.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check
[ $# -ge 2 ] || th_die "usage: fail.sh pause|resume|disconnect|reconnect N..."
action=$1; shift

freeze() { # freeze N FROZEN|THAWED
	local cg f want=$2 v
	cg=$(th_cg "$1")
	th_launcher_pid "$1" >/dev/null || th_die "h$1 is not running"
	if [ -d /sys/fs/cgroup/freezer ]; then
		f=/sys/fs/cgroup/freezer/$cg/freezer.state
		[ -f "$f" ] || th_die "h$1 has no freezer cgroup"
		echo "$want" >"$f"
		for _ in $(seq 100); do [ "$(cat "$f")" = "$want" ] && return 0; sleep 0.05; done
	else
		f=/sys/fs/cgroup/$cg
		[ -d "$f" ] || th_die "h$1 has no cgroup"
		v=0; [ "$want" = FROZEN ] && v=1
		echo $v >"$f/cgroup.freeze"
		for _ in $(seq 100); do
			grep -qx "frozen $v" "$f/cgroup.events" && return 0
			sleep 0.05
		done
	fi
	th_die "h$1: freezer did not reach $want"
}

for i in "$@"; do
	th_index "$i"
	case $action in
	pause) freeze "$i" FROZEN ;;
	resume) freeze "$i" THAWED ;;
	disconnect) ip link set "$(th_veth "$i")" down ;;
	reconnect) ip link set "$(th_veth "$i")" up ;;
	*) th_die "unknown action $action" ;;
	esac
	echo "h$i $action"
done
