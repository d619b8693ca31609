#!/usr/bin/env bash
# hostprep-bench.sh: BENCHMARK, not a test. Times clusterctl's host preparation (hostprep/* and
# runtime/containerd) against the same preparation done by Ansible (e2e/bench/hostprep.yml), on real
# namespace test hosts (e2e/testhosts), fresh and as a no-op re-run.
#
#   sudo e2e/bench/hostprep-bench.sh [N...]     # default: 4 8
#
# For each N it boots three disjoint sets of N fresh hosts (A: clusterctl, B: Ansible with facts, C: Ansible
# with gather_facts=false), runs each tool fresh on its set, then the no-op re-run 3 times per tool (median),
# interleaved (A B C, B C A, C A B) so machine noise hits every tool alike. It then checks that every set
# converged to the same state (file digests, package versions, sysctl values, services). It exits non-zero
# only on a failure (a run failed, a no-op changed something, the sets differ), never because of a ratio.
#
# Environment: BENCH_WORK (default /tmp/clusterctl-hostprep-bench), BENCH_NETS (three /24s, default
# "172.31.20 172.31.21 172.31.22"), BENCH_PREFIXES (default "bca bcb bcc"), BENCH_NOOP_RUNS (default 3),
# BENCH_DEBS (default: gathered by e2e/node-debs.sh, the .debs a test host lacks), BENCH_REV (the git
# revision clusterctl is built from, default HEAD; "worktree" for the checkout as it is).
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${BENCH_WORK:-/tmp/clusterctl-hostprep-bench}
read -r -a NETS <<<"${BENCH_NETS:-172.31.20 172.31.21 172.31.22}"
read -r -a PREFIXES <<<"${BENCH_PREFIXES:-bca bcb bcc}"
NOOP_RUNS=${BENCH_NOOP_RUNS:-3}
DEBS=${BENCH_DEBS:-}
KEY=${CLUSTERCTL_CACHE:-/var/cache/clusterctl}/testhosts/keys/id_ed25519
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(4 8)
TOOLS=(clusterctl ansible ansible-nofacts) # set A, B, C

SECONDS=0
log() { printf '[bench %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "FAILURE: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (test hosts are namespaces)"
[ ${#NETS[@]} = 3 ] && [ ${#PREFIXES[@]} = 3 ] || die "BENCH_NETS and BENCH_PREFIXES: want three each"
for n in "${SIZES[@]}"; do [[ $n =~ ^[1-9][0-9]?$ ]] || die "host count '$n': want 1..99"; done
if [ -z "$DEBS" ]; then # the node packages, as the demo and e2e gather them
	bash "$ROOT/e2e/node-debs.sh" "$WORK/node-debs" && DEBS=$WORK/node-debs/debs
fi
compgen -G "$DEBS/*.deb" >/dev/null || die "no .debs in $DEBS: populate it with
  sudo go test -tags integration ./provision/steps/hostprep/ -count=1   (downloads them once)"

cat >&2 <<'EOF'
================================================================================
 BENCHMARK, not a test: clusterctl vs Ansible host preparation on real hosts.
 Ratios are reported, never asserted; the exit code says only whether it ran.
================================================================================
EOF

# --- tools ---------------------------------------------------------------------------------------------
if ! command -v ansible-playbook >/dev/null; then
	log "installing Ansible (Debian package ansible)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q ansible >/dev/null || die "apt-get install ansible"
fi
export PATH=/usr/local/go/bin:$PATH
mkdir -p "$WORK/bin" "$WORK/cp"
# clusterctl and testhosts are built from a committed revision (git archive: the repository is only read),
# so work in progress in the checkout does not leak into the figures; BENCH_REV=worktree builds the checkout.
REV=${BENCH_REV:-HEAD}
TREE=$ROOT
if [ "$REV" != worktree ]; then
	TREE=$WORK/tree
	rm -rf "$TREE" && mkdir -p "$TREE"
	git -C "$ROOT" archive "$REV" | tar -x -C "$TREE" || die "git archive $REV"
	log "clusterctl from $REV ($(git -C "$ROOT" rev-parse --short "$REV"))"
fi
(cd "$TREE" && go build -o "$WORK/bin/clusterctl" ./cmd/clusterctl && go build -o "$WORK/bin/testhosts" ./e2e/testhosts/cmd/testhosts) ||
	die "go build"
CC=$WORK/bin/clusterctl
TH=$WORK/bin/testhosts

cleanup() {
	local i
	for i in 0 1 2; do "$TH" down --net "${NETS[$i]}" --prefix "${PREFIXES[$i]}" >/dev/null 2>&1 || true; done
	# Ansible's ControlPersist masters of this run.
	for s in "$WORK"/cp/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit dummy >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ansible as a competent user would set it up for N hosts: forks >= hosts, pipelining, ControlPersist (the
# masters outlive one ansible-playbook run, so the no-op re-runs reuse connections), no compression on a
# LAN, the interpreter given (no discovery round trip), per-task timings (ansible.posix.profile_tasks).
cat >"$WORK/ansible.cfg" <<EOF
[defaults]
forks = 50
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
callbacks_enabled = ansible.posix.profile_tasks
deprecation_warnings = False
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $WORK/cp
EOF
export ANSIBLE_CONFIG=$WORK/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

# timed FILE CMD...: runs CMD, writes its wall time (CLOCK_MONOTONIC, measured around the child only) to FILE.
timed() {
	python3 - "$@" <<'EOF'
import subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t = time.monotonic()
rc = subprocess.call(cmd)
d = time.monotonic() - t
open(out, "w").write("%.3f\n" % d)
sys.exit(rc)
EOF
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.1fx", a/b; else print "-"}'; }

# Every test host's systemd takes ~14 inotify instances; Debian's default fs.inotify.max_user_instances
# (128, machine-wide for root) runs out at about 9 hosts, and sshd then never comes up on the rest.
need=$((3 * 20 * $(printf '%s\n' "${SIZES[@]}" | sort -n | tail -1) + 256))
have=$(sysctl -n fs.inotify.max_user_instances)
if [ "$have" -lt "$need" ]; then
	log "raising fs.inotify.max_user_instances $have -> $need (3 sets of test hosts; left raised)"
	sysctl -qw fs.inotify.max_user_instances="$need" || die "raise fs.inotify.max_user_instances"
fi

# --- the bundle (same .debs for both tools) ----------------------------------------------------------
BUNDLE=$WORK/bundle
rm -rf "$WORK/src" "$BUNDLE"
mkdir -p "$WORK/src/debs"
cp "$DEBS"/*.deb "$WORK/src/debs/"
{
	echo "bench_deb_dir: $BUNDLE/debs"
	echo "bench_debs:"
	for f in "$DEBS"/*.deb; do
		p=$(dpkg-deb -f "$f" Package) v=$(dpkg-deb -f "$f" Version)
		printf '  - {file: "%s", package: "%s", version: "%s", line: "%s ii %s"}\n' "${f##*/}" "$p" "$v" "$p" "$v"
	done
} >"$WORK/debs.yml"

# spec_dir SET N: the directory testhosts writes the spec of set SET (0..2) to.
spec_dir() { echo "$WORK/n$2/${TOOLS[$1]}"; }

# boot SET N: fresh hosts, the spec (+ bench.cue) and an Ansible inventory generated from the spec's hosts.
boot() {
	local i=$1 n=$2 d
	d=$(spec_dir "$i" "$n")
	rm -rf "$d" && mkdir -p "$d"
	"$TH" down --net "${NETS[$i]}" --prefix "${PREFIXES[$i]}" >/dev/null 2>&1 || true
	"$TH" up "$n" --net "${NETS[$i]}" --prefix "${PREFIXES[$i]}" --dir "$d" >"$d/testhosts.out" 2>"$d/testhosts.err" ||
		{ cat "$d/testhosts.err" >&2; die "testhosts up $n --net ${NETS[$i]}"; }
	# testhosts writes "package cluster"; clusterctl's loader wants package clusterctl.
	sed -i '1s/^package cluster$/package clusterctl/' "$d/cluster.cue"
	cat >"$d/bench.cue" <<EOF
package clusterctl

// The benchmark's additions to the spec testhosts writes. e2e/bench/files/ holds what clusterctl renders
// for them; hostprep-bench.sh checks Ansible's hosts end up with the same digests.
cluster: artifacts: {mode: "bundle", bundleDir: "$BUNDLE"}
cluster: network: kubeProxyMode: "iptables"
cluster: runtime: mirrors: "docker.io": ["https://mirror.bench.local:5000"]
cluster: hostPrep: timeSync: servers: ["ntp.bench.local"]
EOF
	{
		echo "[k8s]"
		sed -n 's/^[[:space:]]*\(h[0-9]*\): {address: "\([0-9.]*\)".*/\1 ansible_host=\2/p' "$d/cluster.cue"
		echo
		echo "[k8s:vars]"
		echo "ansible_user=root"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_ssh_common_args='-o UserKnownHostsFile=$d/known_hosts'"
	} >"$d/inventory.ini"
	[ "$(grep -c ansible_host= "$d/inventory.ini")" = "$n" ] || die "inventory of $d: want $n hosts"
}

# run SET N LABEL: one run of set SET's tool; its time in $d/LABEL.time, its output in $d/LABEL.{out,err}.
run() {
	local i=$1 n=$2 label=$3 d
	d=$(spec_dir "$i" "$n")
	cut -d' ' -f1 /proc/loadavg >"$d/$label.load" # other work on the machine skews both tools: reported
	case ${TOOLS[$i]} in
	clusterctl) timed "$d/$label.time" "$CC" apply --yes --only hostprep,runtime "$d" >"$d/$label.out" 2>"$d/$label.err" ||
		{ tail -20 "$d/$label.err" >&2; die "clusterctl apply ($label, N=$n) failed: $d/$label.err"; } ;;
	ansible*)
		local gf=true
		[ "${TOOLS[$i]}" = ansible-nofacts ] && gf=false
		timed "$d/$label.time" ansible-playbook -i "$d/inventory.ini" -e "@$WORK/debs.yml" -e "bench_gather_facts=$gf" \
			"$HERE/hostprep.yml" >"$d/$label.out" 2>"$d/$label.err" ||
			{ tail -30 "$d/$label.out" >&2; die "ansible-playbook ($label, N=$n) failed: $d/$label.out"; } ;;
	esac
	log "N=$n ${TOOLS[$i]} $label: $(cat "$d/$label.time")s (load average before: $(cat "$d/$label.load"))"
	# A no-op must be one: the comparison is meaningless otherwise.
	if [[ $label == noop* ]]; then
		case ${TOOLS[$i]} in
		clusterctl) grep -q '^No changes\.' "$d/$label.out" || die "clusterctl's re-run changed something: $d/$label.out" ;;
		ansible*) grep -E '^h[0-9]+ +:' "$d/$label.out" | grep -vq 'changed=0' && die "Ansible's re-run changed something: $d/$label.out" ;;
		esac
	fi
	return 0
}

# state SET N HOST: what a converged host is, independent of its addresses (the /etc/hosts block's
# addresses are the set's own, so the block is printed with the net replaced by NET).
state() {
	local i=$1 n=$2 h=$3 d
	d=$(spec_dir "$i" "$n")
	ssh -n -i "$KEY" -o UserKnownHostsFile="$d/known_hosts" -o BatchMode=yes root@"${NETS[$i]}.$((10 + h))" '
		cd / && sha256sum etc/sysctl.d/99-kubernetes.conf etc/modules-load.d/kubernetes.conf \
			etc/containerd/config.toml etc/containerd/certs.d/docker.io/hosts.toml \
			etc/systemd/timesyncd.conf.d/clusterctl.conf etc/hostname
		stat -c "%a %U:%G %n" etc/sysctl.d/99-kubernetes.conf etc/containerd/config.toml etc/containerd/certs.d/docker.io/hosts.toml
		sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
		echo "containerd: $(systemctl is-enabled containerd)/$(systemctl is-active containerd)"
		echo "timesyncd: $(systemctl is-enabled systemd-timesyncd)"
		ctr version >/dev/null && echo "ctr: answers"
		echo "cni bridge -> $(readlink /opt/cni/bin/bridge)"
		dpkg-query -W -f="\${Package} \${db:Status-Abbrev}\${Version}\n" containerd runc containernetworking-plugins conntrack socat ethtool ipset libipset13 systemd-timesyncd
		echo "swap: $(swapon --noheadings --show | wc -l) active, $(grep -c "^#clusterctl# " etc/fstab || true) commented"
		ls /var/tmp | grep -E "clusterctl-packages|bench-packages" || echo "no package leftovers"
		sed -n "/^# BEGIN clusterctl managed block/,/^# END clusterctl managed block/p" etc/hosts
	' | sed "s/${NETS[$i]//./\\.}\./NET./g"
}

verify() {
	local n=$1 i h ref
	for h in 1 "$n"; do
		ref=$(state 0 "$n" "$h") || die "state of ${TOOLS[0]} h$h"
		grep -q "containerd: enabled/active" <<<"$ref" && grep -q "net.ipv4.ip_forward = 1" <<<"$ref" &&
			grep -q "ctr: answers" <<<"$ref" || die "clusterctl's h$h is not prepared:
$ref"
		for i in 1 2; do
			diff <(echo "$ref") <(state "$i" "$n" "$h") >"$WORK/n$n/diff-$i-h$h" ||
				die "N=$n h$h: ${TOOLS[$i]} converged differently from clusterctl (< clusterctl, > ${TOOLS[$i]}):
$(cat "$WORK/n$n/diff-$i-h$h")"
		done
	done
	echo "$ref" >"$WORK/n$n/state-h1"
	log "N=$n: all three sets converged the same way (h1 and h$n: digests, packages, sysctls, services, /etc/hosts block)"
}

# --- the runs ------------------------------------------------------------------------------------------
ansible-playbook --version >/dev/null # warm the page cache for the first timed run
ansible-playbook --syntax-check -i localhost, "$HERE/hostprep.yml" >/dev/null 2>&1 || die "hostprep.yml syntax"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
round=0
for n in "${SIZES[@]}"; do
	log "N=$n: booting 3 x $n fresh hosts"
	for i in 0 1 2; do boot "$i" "$n"; done
	if [ ! -f "$BUNDLE/manifest.json" ]; then
		"$CC" bundle "$(spec_dir 0 "$n")" --from "$WORK/src" --out "$BUNDLE" >"$WORK/bundle.out" 2>&1 ||
			{ cat "$WORK/bundle.out" >&2; die "clusterctl bundle"; }
	fi
	# Interleaved: the tool that goes first rotates with every round.
	order() { local k; for k in 0 1 2; do echo $(((k + round) % 3)); done; }
	for i in $(order); do run "$i" "$n" fresh; done
	round=$((round + 1))
	for r in $(seq 1 "$NOOP_RUNS"); do
		for i in $(order); do run "$i" "$n" "noop$r"; done
		round=$((round + 1))
	done
	verify "$n"
	for i in 0 1 2; do
		d=$(spec_dir "$i" "$n")
		noops=()
		for r in $(seq 1 "$NOOP_RUNS"); do noops+=("$(cat "$d/noop$r.time")"); done
		cp=""
		[ "$i" = 0 ] && cp=$(sed -n 's/^Critical path (\([0-9.]*\)s of \([0-9.]*\)s wall).*/\1/p' "$d/fresh.err" | tail -1)
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "${TOOLS[$i]}" "$(cat "$d/fresh.time")" "$(median "${noops[@]}")" "${noops[*]}" "$cp" >>"$RESULTS"
	done
	for i in 0 1 2; do "$TH" down --net "${NETS[$i]}" --prefix "${PREFIXES[$i]}" >/dev/null 2>&1 || true; done
done

# --- the table -----------------------------------------------------------------------------------------
{
	echo
	echo "BENCHMARK (not a test): host preparation, wall clock of the whole command (CLOCK_MONOTONIC)"
	echo "fresh = first run on fresh hosts; no-op = median of $NOOP_RUNS re-runs on converged hosts"
	echo
	printf '%-3s  %-16s  %8s  %-22s  %9s  %-22s  %s\n' N tool "fresh s" "(critical path)" "no-op s" "(runs)" "ansible/clusterctl fresh, no-op"
	while IFS=$'\t' read -r n tool fresh noop runs cp; do
		if [ "$tool" = clusterctl ]; then cfresh=$fresh cnoop=$noop; fi
		extra="" cps=""
		[ -n "$cp" ] && cps="(cp ${cp}s)"
		[ "$tool" != clusterctl ] && extra="$(ratio "$fresh" "$cfresh"), $(ratio "$noop" "$cnoop")"
		printf '%-3s  %-16s  %8s  %-22s  %9s  %-22s  %s\n' "$n" "$tool" "$fresh" "$cps" "$noop" "($runs)" "$extra"
	done <"$RESULTS"
	echo
	echo "machine load (1-min average) before each timed run: $(cat "$WORK"/n*/*/*.load | sort -g | sed -n '1p;$p' | paste -sd- ) on $(nproc) CPUs"
	echo "targets (from the issue): no-op >= 10x faster than Ansible and < 1 s for 8 hosts; fresh >= 5x faster"
	echo "logs: $WORK/n<N>/<tool>/{fresh,noop*}.{out,err,time}; clusterctl's per-step timings are in its .err"
} | tee "$WORK/table.txt"
