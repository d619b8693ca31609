#!/bin/bash
# wait-ssh.sh [--timeout SECONDS] N...: wait until each host's sshd accepts the test key as root, checking its
# real host key (StrictHostKeyChecking=yes). The key is read from the host's disk as soon as the host generated
# it at first boot. Writes $RUN/hN/known_hosts and then $RUN/known_hosts with every host of the run.
# Prints "hN ADDR ready S" per host; on timeout, the tail of the host's console.log, and fails.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check
TIMEOUT=120
if [ "${1:-}" = --timeout ]; then TIMEOUT=$2; shift 2; fi
[ $# -gt 0 ] || th_die "usage: wait-ssh.sh [--timeout S] N..."

wait_one() {
	local i=$1 h addr pub t0 now kh
	h=$(th_hostdir "$i"); addr=$(th_addr "$i")
	pub=$h/upper/etc/ssh/ssh_host_ed25519_key.pub
	kh=$h/known_hosts
	t0=$(date +%s.%N)
	while :; do
		if [ -s "$pub" ]; then
			echo "$addr $(awk '{print $1, $2}' "$pub")" >"$kh.tmp" && mv "$kh.tmp" "$kh"
			if ssh -F none -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$kh" \
				-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ConnectTimeout=2 -i "$TH_KEY" \
				"root@$addr" true </dev/null 2>/dev/null; then
				now=$(date +%s.%N)
				echo "h$i $addr ready $(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2fs", b - a }')"
				return 0
			fi
		fi
		now=$(date +%s)
		if ((now - ${t0%.*} >= TIMEOUT)); then
			echo "h$i $addr: sshd did not accept the key within ${TIMEOUT}s; console.log:" >&2
			tail -n 20 "$h/console.log" >&2 2>/dev/null || true
			th_launcher_pid "$i" >/dev/null || echo "h$i is not running" >&2
			return 1
		fi
		sleep 0.1
	done
}

pids=()
for i in "$@"; do th_index "$i"; wait_one "$i" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
tmp=$(mktemp "$TH_RUN/known_hosts.XXXXXX") # Boot of two hosts at once: each writes its own, then renames
cat "$TH_RUN"/h*/known_hosts >"$tmp" 2>/dev/null || true
chmod 644 "$tmp"
mv "$tmp" "$TH_RUN/known_hosts"
exit $rc
