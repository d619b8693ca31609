#!/usr/bin/env bash
# verify.sh [--containerd] OUT: check a staging directory made by build.sh.
#
# Always: binaries are static and print the expected versions, every image archive is valid and named as
# images.txt says (mkimage check), the runtime binaries answer. With --containerd (needs ctr and a running containerd
# on this machine; the caller sets it up and tears it down): import every archive into the k8s.io namespace,
# check the resulting names, and run the hello image with host networking to GET / on :8080.
set -euo pipefail
shopt -s inherit_errexit
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CTR=0
[ "${1:-}" = --containerd ] && { CTR=1; shift; }
OUT=${1:?usage: verify.sh [--containerd] OUT}
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
has() { grep "$@" >/dev/null; } # reads all its input: "| grep -q" can SIGPIPE the writer under pipefail

[ -f "$OUT/.complete" ] || fail "$OUT/.complete missing"
# shellcheck disable=SC1091
. "$OUT/versions.env"

for b in kubelet kubeadm kubectl flannel-cni; do
	f=$OUT/bin/$b
	[ -x "$f" ] || fail "$f missing"
	file -b "$f" 2>/dev/null | has 'statically linked' || { ldd "$f" 2>&1 | has 'not a dynamic' || fail "$f is not static"; }
done
[ "$("$OUT/bin/kubeadm" version -o short)" = "$KUBERNETES_VERSION" ] || fail "kubeadm version"
"$OUT/bin/kubelet" --version | has -x "Kubernetes $KUBERNETES_VERSION" || fail "kubelet --version: $("$OUT/bin/kubelet" --version)"
"$OUT/bin/kubectl" version --client -o json | has "\"gitVersion\": \"$KUBERNETES_VERSION\"" || fail "kubectl version"
ok "kubelet, kubeadm, kubectl $KUBERNETES_VERSION, static"
"$OUT/bin/flannel-cni" 2>&1 </dev/null | has -i 'flannel\|CNI' || true # prints its about text or an error without CNI_COMMAND
ok "flannel-cni present"

mk=$(mktemp -d)
trap 'rm -rf "$mk"' EXIT
(cd "$HERE/mkimage" && CGO_ENABLED=0 go build -o "$mk/mkimage" .)
while read -r ref file; do
	"$mk/mkimage" check -name "$ref" "$OUT/images/$file" | sed 's/^/     /'
done <"$OUT/images.txt"
[ "$(wc -l <"$OUT/images.txt")" = "$(find "$OUT/images" -name '*.tar' | wc -l)" ] || fail "images.txt and images/ disagree"
ok "$(wc -l <"$OUT/images.txt") image archives"

want=$("$OUT/bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" --image-repository "$IMAGE_REPOSITORY" 2>/dev/null | sort)
for r in $want; do grep -q "^$r " "$OUT/images.txt" || fail "kubeadm wants $r, not built"; done
ok "kubeadm config images list: all $(echo "$want" | wc -l) present"

[ "$("$OUT/bin/containerd" --version | awk '{ print $3 }')" = "$CONTAINERD_VERSION" ] || fail "containerd --version"
"$OUT/bin/runc" --version | has "^libseccomp: " || fail "runc without seccomp"
for p in bridge host-local loopback portmap; do [ -x "$OUT/cni/$p" ] || fail "cni/$p missing"; done
ok "runtime: containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_PLUGINS_VERSION"

[ $CTR = 1 ] || exit 0
command -v ctr >/dev/null || fail "ctr not found"
while read -r ref file; do
	ctr -n k8s.io images import "$OUT/images/$file" >/dev/null
	names=$(ctr -n k8s.io images ls -q) # not piped into grep -q: SIGPIPE + pipefail
	grep -qx "$ref" <<<"$names" || fail "import of $file did not create $ref"
done <"$OUT/images.txt"
ok "ctr import: every image has its name"
ctr -n k8s.io images ls -q | grep -v '^sha256:' | sed 's/^/     /'
# kube-proxy's iptables works inside its image
kp=$(grep '/kube-proxy:' "$OUT/images.txt" | cut -d' ' -f1)
ctr -n k8s.io run --rm --net-host "$kp" verify-iptables /usr/sbin/iptables --version | has 'nf_tables' || fail "iptables in $kp"
# in the container's own network namespace: a rule with extension modules (conntrack, comment) and NAT
for img in "$kp" "$FLANNEL_IMAGE"; do
	ctr -n k8s.io run --rm --privileged "$img" verify-iptables /usr/sbin/iptables -w -A INPUT -m conntrack --ctstate ESTABLISHED \
		-m comment --comment verify -j ACCEPT || fail "iptables rule with modules in $img"
	ctr -n k8s.io run --rm --privileged "$img" verify-iptables /usr/sbin/iptables -t nat -A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE ||
		fail "iptables nat rule in $img"
done
ok "iptables with extension modules (conntrack, comment, MASQUERADE) works in $kp and $FLANNEL_IMAGE"
fl=$FLANNEL_IMAGE
ctr -n k8s.io run --rm "$fl" verify-flannel /opt/bin/flanneld --version 2>&1 | has "$FLANNEL_VERSION" || fail "flanneld --version in $fl"
ctr -n k8s.io run --rm "$fl" verify-cp /bin/cp /flannel /tmp/x || fail "cp in $fl"
ok "flanneld --version and /bin/cp run in $fl"
et=$(grep '/etcd:' "$OUT/images.txt" | cut -d' ' -f1)
ctr -n k8s.io run --rm "$et" verify-etcd /usr/local/bin/etcdctl version | has 'etcdctl version' || fail "etcdctl in $et"
ok "etcdctl runs in $et"
ctr -n k8s.io run -d --net-host "$HELLO_IMAGE" verify-hello >/dev/null
trap 'ctr -n k8s.io task kill -s KILL verify-hello >/dev/null 2>&1; sleep 1; ctr -n k8s.io containers rm verify-hello >/dev/null 2>&1; rm -rf "$mk"' EXIT
for _ in $(seq 50); do
	if body=$(curl -fsS http://127.0.0.1:8080/ 2>/dev/null); then break; fi
	sleep 0.2
done
[[ ${body:-} == "hello from "* ]] || fail "hello did not answer on :8080"
ok "hello answers on :8080: $body"
