#!/bin/bash
# exec.sh N SCRIPT: run SCRIPT with bash as root inside host hN through nsenter, independent of its sshd and
# network. The process joins the host's cgroups except the freezer, so it runs even while the host is paused.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check
[ $# = 2 ] || th_die "usage: exec.sh N SCRIPT"
th_index "$1"
init=$(th_init_pid "$1") || th_die "h$1 is not running"
cg=$(th_cg "$1")
# (On a pure cgroup v2 machine freezing is hierarchical: stay out of the host's cgroup there.)
for r in $(th_cgroots); do
	case $r in */freezer) continue ;; esac
	if [ -d "$r/$cg" ] && ! th_cgv2; then echo $$ >"$r/$cg/cgroup.procs"; fi
done
exec nsenter -t "$init" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb /bin/bash -c "$2"
