#!/usr/bin/env bash
# build.sh: build, once, everything a real Kubernetes node of the e2e tests needs that cannot be downloaded
# on the test machine (no registry, no release downloads): kubelet/kubeadm/kubectl, the container runtime
# (containerd 2, runc, CNI plugins), and one OCI image archive per image kubeadm asks for (plus flannel and the
# sample workload). Everything comes from the Go module proxy and the machine's apt sources (iptables, nft,
# busybox and libseccomp for the images and runc). The Debian packages a test host lacks come from
# e2e/node-debs.sh, per Debian release. See README.md.
#
#   sudo e2e/artifacts/build.sh            # prints progress, ends with "ready: $OUT" (or "cached: $OUT")
#
# Environment (all optional):
#   K8S_VERSION           Kubernetes version (default v1.37.2; every patch in provision/versions/kubernetes.tsv
#                         is known to build)
#   IMAGE_REPOSITORY      prefix of the kubeadm images (default registry.local/k8s): must equal the cluster
#                         spec's kubernetes.imageRepository
#   APP_IMAGE_REPOSITORY  prefix of the flannel and hello images (default registry.local/clusterctl)
#   CLUSTERCTL_CACHE      cache root (default /var/cache/clusterctl); output in $CLUSTERCTL_CACHE/artifacts
#   OUT                   staging directory (default $CLUSTERCTL_CACHE/artifacts/k8s-$K8S_VERSION-$GOVERSION)
#   ARTIFACTS_JOBS        go build -p (default: number of CPUs)
#   ARTIFACTS_FORCE=1     rebuild the staging directory even when it is complete (built binaries are reused)
#
# Needs: Go >= 1.26 (flannel v0.28.10 requires it), apt-get/apt-cache/dpkg-deb (Debian 12 build machine), root
# to apt-get install iptables, nftables, gcc and libseccomp-dev when they are missing. Never reads anything outside this directory but the Go
# module cache/proxy and apt.
set -euo pipefail
shopt -s inherit_errexit # command substitutions (component builds) stop at the first failure too

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECONDS=0
log() { printf '[artifacts %ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

K8S_VERSION=${K8S_VERSION:-v1.37.2}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-registry.local/k8s}
APP_IMAGE_REPOSITORY=${APP_IMAGE_REPOSITORY:-registry.local/clusterctl}
CACHE=${CLUSTERCTL_CACHE:-/var/cache/clusterctl}
ART=$CACHE/artifacts
JOBS=${ARTIFACTS_JOBS:-$(nproc)}

# Components that do not follow the Kubernetes version.
FLANNEL_VERSION=v0.28.10
CNI_FLANNEL_VERSION=v0.9.1 # github.com/containernetworking/plugins/plugins/meta/flannel
CONTAINERD_VERSION=v2.4.2  # containerd, containerd-shim-runc-v2, ctr
RUNC_VERSION=v1.5.3
CNI_PLUGINS_VERSION=v1.10.0 # bridge, host-local, loopback, portmap: what flannel's CNI config and containerd call
CNI_PLUGINS="ipam/host-local main/bridge main/loopback meta/portmap"
HELLO_TAG=v1

# The etcd, CoreDNS and pause versions this Kubernetes version's kubeadm deploys come from clusterctl's one
# version table (provision/versions/kubernetes.tsv, read from kubeadm's cmd/kubeadm/app/constants). The build
# checks that row against the kubeadm source and against `kubeadm config images list`; a version with no row
# takes them from the kubeadm source.
VERSIONS_TSV=${VERSIONS_TSV:-$HERE/../../provision/versions/kubernetes.tsv}
ETCD_VERSION="" COREDNS_VERSION="" PAUSE_VERSION=""
if [ -f "$VERSIONS_TSV" ]; then
	read -r ETCD_VERSION COREDNS_VERSION PAUSE_VERSION < <(awk -F'\t' -v p="${K8S_VERSION#v}" '!/^#/ && $2 == p { print $3, $4, $5 }' "$VERSIONS_TSV") || true
fi
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION=$K8S_VERSION: want v1.MINOR.PATCH"
K8S_MINOR=${BASH_REMATCH[1]}
K8S_PATCH=${BASH_REMATCH[2]}

command -v go >/dev/null || die "go not found"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
GOV=$(go env GOVERSION)
GOARCH=$(go env GOARCH)
OUT=${OUT:-$ART/k8s-$K8S_VERSION-$GOV}
WORK=$ART/.work/k8s-$K8S_VERSION-$GOV
COMP=$ART/components # built binaries, one directory per component and input hash

# Inputs of the staging directory: this directory's files (but tests, README.md, verify.sh), the parameters
# and the base package list.
inputs_hash() {
	{
		(cd "$HERE" && find . -type f ! -name '*_test.go' ! -name README.md ! -name verify.sh -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		echo "$K8S_VERSION $IMAGE_REPOSITORY $APP_IMAGE_REPOSITORY $GOV $GOARCH"
	} | sha256sum | cut -c1-16
}
HASH=$(inputs_hash)
if [ "${ARTIFACTS_FORCE:-0}" != 1 ] && [ "$(cat "$OUT/.complete" 2>/dev/null)" = "$HASH" ]; then
	echo "cached: $OUT"
	exit 0
fi

mkdir -p "$ART" "$COMP"
exec 9>"$ART/.lock-k8s-$K8S_VERSION-$GOV"
if ! flock -n 9; then
	log "another build of $K8S_VERSION is running: waiting for it"
	flock 9
fi
if [ "${ARTIFACTS_FORCE:-0}" != 1 ] && [ "$(cat "$OUT/.complete" 2>/dev/null)" = "$HASH" ]; then
	echo "cached: $OUT"
	exit 0
fi
log "building $OUT (kubernetes $K8S_VERSION, $GOV, inputs $HASH, go build -p $JOBS)"
rm -rf "$WORK"
mkdir -p "$WORK"

# ---------------------------------------------------------------- helpers

# moddir MODULE@VERSION: the module's directory in the module cache (downloaded through the proxy).
moddir() {
	local j
	j=$(go mod download -json "$1") || die "go mod download $1 failed: $j"
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$j"
}

# relreplaces GOMOD...: "MODULE VERSION" for every replace directive pointing at a relative path (../x) in
# the given go.mod files, with the version the same file requires. Used for etcd's multi-module repository.
relreplaces() {
	awk '
	FNR == 1 { inreq = 0; inrep = 0 }
	/^require \(/ { inreq = 1; next }
	/^replace \(/ { inrep = 1; next }
	/^\)/ { inreq = 0; inrep = 0; next }
	inreq && NF >= 2 { ver[$1] = $2 }
	/^require [^(]/ { ver[$2] = $3 }
	inrep && $2 == "=>" && $3 ~ /^\.\.?\// { rel[$1] = 1 }
	/^replace [^(]/ && $3 == "=>" && $4 ~ /^\.\.?\// { rel[$2] = 1 }
	END { for (m in rel) if (ver[m] != "") print m, ver[m] }' "$@" | LC_ALL=C sort
}

# prepare NAME: copy the wrapper module NAME (go.mod, go.sum, sources) to $WORK/NAME and print that path.
prepare() {
	rm -rf "${WORK:?}/$1"
	mkdir -p "$WORK/$1"
	cp -r "$HERE/$1/." "$WORK/$1/"
	echo "$WORK/$1"
}

# component NAME KEY BUILDFN: run BUILDFN DIR (which must leave its binaries in DIR) unless
# $COMP/NAME-KEY-GOV-HASH is complete, where HASH covers the wrapper module and the text of the build
# function and its helpers (functions named NAME_*, e.g. etcd_wrapper for build_etcd).
# Prints the directory.
component() {
	local name=$1 key=$2 fn=$3 src=${4:-} h dir
	h=$({
		[ -n "$src" ] && (cd "$src" && find . -type f ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		# shellcheck disable=SC2046
		declare -f "$fn" gobuild relreplaces $(compgen -A function "${fn#build_}_")
		echo "$key $GOV $GOARCH"
	} | sha256sum | cut -c1-12)
	dir=$COMP/$name-$key-$GOV-$h
	local lock
	exec {lock}>"$dir.lock" # builds of two Kubernetes versions share components (flannel, ...)
	flock "$lock"
	if [ -f "$dir/.complete" ]; then
		log "$name $key: built before ($dir)"
	else
		log "building $name $key"
		local t0=$SECONDS
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		"$fn" "$dir.tmp" "$src" >&2 # no "|| die" here: it would switch off set -e inside $fn
		touch "$dir.tmp/.complete"
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
		log "built $name $key in $((SECONDS - t0))s: $(cd "$dir" && ls | tr '\n' ' ')"
	fi
	exec {lock}>&-
	echo "$dir"
}

gobuild() { go build -mod=mod -trimpath -p "$JOBS" "$@"; }

# ---------------------------------------------------------------- tools on the build machine

need_apt_lists() {
	local pol
	pol=$(apt-cache policy conntrack 2>/dev/null || true) # not piped into grep -q: SIGPIPE + pipefail
	[[ $pol == *"Candidate: "[0-9]* ]] && return
	log "apt lists lack conntrack: apt-get update"
	apt-get update -qq
}

if ! command -v xtables-nft-multi >/dev/null || ! command -v nft >/dev/null; then
	log "installing iptables and nftables on the build machine (xtables-nft-multi goes into kube-proxy and flannel, nft into kube-proxy)"
	need_apt_lists
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables nftables >/dev/null
fi
# runc links libseccomp statically (cgo): the compiler, the static library and pkg-config.
if ! command -v gcc >/dev/null || ! command -v pkg-config >/dev/null || [ ! -f /usr/include/seccomp.h ]; then
	log "installing gcc, pkg-config and libseccomp-dev on the build machine (runc is linked against libseccomp)"
	need_apt_lists
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config libseccomp-dev >/dev/null
fi
for c in apt-get apt-cache dpkg-deb ldd sha256sum flock; do command -v $c >/dev/null || die "$c not found"; done

# ---------------------------------------------------------------- component builds (each: DIR SRC)

# Kubernetes: a wrapper module requiring k8s.io/kubernetes, whose go.mod points every k8s.io/* staging
# module at ./staging/src/...: the wrapper replaces those with the published k8s.io/X v0.MINOR.PATCH.
# The checked-in kube/go.mod is for the default version; other versions get the same file regenerated.
build_kube() {
	local out=$1 w=$2 kdir info date ld p
	kdir=$(moddir "k8s.io/kubernetes@$K8S_VERSION")
	if ! grep -q "^require k8s.io/kubernetes $K8S_VERSION\$" "$w/go.mod"; then
		{
			printf 'module github.com/clusterctl/clusterctl/e2e/artifacts/kube\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
			awk -v v="v0.$K8S_MINOR.$K8S_PATCH" '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { print "\t" $1 " => " $1 " " v }' "$kdir/go.mod"
			printf ')\n'
		} >"$w/go.mod"
	fi
	info=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')
	date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
	ld="-s -w"
	for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitCommit=unknown"
		ld+=" -X $p.gitTreeState=archive -X $p.buildDate=${date:-1970-01-01T00:00:00Z}"
	done
	(cd "$w" && gobuild -ldflags "$ld" -o "$out/" k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm \
		k8s.io/kubernetes/cmd/kubectl)
}

# etcd: server, etcdctl and etcdutl live in one repository as modules that replace each other with relative
# paths (../api, ...): the wrapper replaces those with the released versions. When the proxy does not serve
# etcdctl/etcdutl at the server's version (v3.5.24: 403), they come from the newest same-minor version it
# lists, built in a second copy of the wrapper (ETCDCTL_VERSION in versions.env).
etcd_wrapper() { # etcd_wrapper DIR VERSION MODULE...: (re)write DIR/go.mod for those etcd modules
	local w=$1 v=$2 m mv mods=() args=()
	shift 2
	grep -q "^[[:space:]]*go.etcd.io/etcd/$1/v3 $v\$" "$w/go.mod" 2>/dev/null &&
		[ "$(grep -c "^[[:space:]]*go.etcd.io/etcd/[a-z]*/v3 v" "$w/go.mod")" = $# ] && return 0
	for m in "$@"; do mods+=("$(moddir "go.etcd.io/etcd/$m/v3@$v")/go.mod"); done
	printf 'module github.com/clusterctl/clusterctl/e2e/artifacts/etcd\n\ngo 1.24\n' >"$w/go.mod"
	for m in "$@"; do args+=(-require="go.etcd.io/etcd/$m/v3@$v"); done
	while read -r m mv; do args+=(-replace="$m=$m@$mv"); done < <(relreplaces "${mods[@]}")
	(cd "$w" && go mod edit "${args[@]}")
}

build_etcd() {
	local out=$1 w=$2 v=v${ETCD_VERSION%-*} tv ld
	tv=$(etcd_tools_version "$v")
	ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v"
	if [ "$tv" = "$v" ]; then
		etcd_wrapper "$w" "$v" server etcdctl etcdutl
	else
		log "etcdctl/etcdutl $v are not served by the module proxy: building them from $tv"
		rm -rf "$w-tools"
		cp -r "$w" "$w-tools"
		etcd_wrapper "$w" "$v" server
		etcd_wrapper "$w-tools" "$tv" etcdctl etcdutl
	fi
	(cd "$w" && gobuild -ldflags "$ld" -o "$out/etcd" go.etcd.io/etcd/server/v3)
	ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$tv"
	[ "$tv" = "$v" ] || w=$w-tools
	(cd "$w" && gobuild -ldflags "$ld" -o "$out/etcdctl" go.etcd.io/etcd/etcdctl/v3 &&
		gobuild -ldflags "$ld" -o "$out/etcdutl" go.etcd.io/etcd/etcdutl/v3)
	echo "$tv" >"$out/tools-version"
}

# etcd_tools_version V: V when the proxy serves etcdctl and etcdutl at V, else the newest version with V's
# major.minor that it lists for both.
etcd_tools_version() {
	local v=$1 c
	if go mod download "go.etcd.io/etcd/etcdctl/v3@$v" "go.etcd.io/etcd/etcdutl/v3@$v" 2>/dev/null; then
		echo "$v"
		return
	fi
	for c in $(go list -m -versions "go.etcd.io/etcd/etcdctl/v3" | tr ' ' '\n' | grep "^${v%.*}\.[0-9]*\$" | sort -t. -k3,3nr); do
		if go mod download "go.etcd.io/etcd/etcdctl/v3@$c" "go.etcd.io/etcd/etcdutl/v3@$c" 2>/dev/null; then
			echo "$c"
			return
		fi
	done
	die "no etcdctl/etcdutl ${v%.*}.x available from the module proxy"
}

build_coredns() {
	local out=$1 w=$2
	(cd "$w" && go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION" &&
		gobuild -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$out/coredns" github.com/coredns/coredns)
}

# flannel: its main imports the tencentvpc backend (whose SDK the module proxy does not serve) and the udp
# backend (cgo): the wrapper's main is flannel's main.go without those two imports, generated here.
build_flannel() {
	local out=$1 w=$2 fdir
	fdir=$(moddir "github.com/flannel-io/flannel@$FLANNEL_VERSION")
	(cd "$w" && go mod edit -require="github.com/flannel-io/flannel@$FLANNEL_VERSION")
	grep -v -e '"github.com/flannel-io/flannel/pkg/backend/tencentvpc"' -e '"github.com/flannel-io/flannel/pkg/backend/udp"' \
		"$fdir/main.go" >"$w/main.go"
	[ "$(($(wc -l <"$fdir/main.go") - $(wc -l <"$w/main.go")))" = 2 ] || die "flannel main.go: expected to drop 2 backend imports"
	grep -q '"github.com/flannel-io/flannel/pkg/backend/vxlan"' "$w/main.go" || die "flannel main.go lost vxlan"
	(cd "$w" && gobuild -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" -o "$out/flanneld" .)
}

build_cni_flannel() {
	local out=$1 w=$2
	(cd "$w" && go mod edit -require="github.com/containernetworking/plugins@$CNI_FLANNEL_VERSION" &&
		gobuild -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_FLANNEL_VERSION" \
			-o "$out/flannel" github.com/containernetworking/plugins/plugins/meta/flannel)
}

# containerd 2 as its Makefile builds the static release (netgo, osusergo, static_build; the shim without grpc).
build_containerd() {
	local out=$1 w=$2 m=github.com/containerd/containerd/v2 ld
	ld="-s -w -X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Revision=module"
	(cd "$w" && go mod edit -require="$m@$CONTAINERD_VERSION" &&
		gobuild -tags "urfave_cli_no_docs osusergo netgo static_build" -ldflags "$ld" -o "$out/" $m/cmd/containerd $m/cmd/ctr &&
		gobuild -tags "urfave_cli_no_docs osusergo netgo static_build no_grpc" -ldflags "$ld" -o "$out/" $m/cmd/containerd-shim-runc-v2)
}

# runc needs cgo for seccomp (kubeadm's static pods ask for the RuntimeDefault profile): linked static-pie
# against the build machine's libseccomp.a, as runc's `make static` does. Without the libpathrs tag (a Rust
# library this machine lacks) runc uses its pure-Go fallback.
build_runc() {
	local out=$1 w=$2
	(cd "$w" && go mod edit -require="github.com/opencontainers/runc@$RUNC_VERSION" &&
		CGO_ENABLED=1 gobuild -buildmode=pie -tags "seccomp urfave_cli_no_docs netgo osusergo" \
			-ldflags "-s -w -X main.version=${RUNC_VERSION#v} -linkmode external -extldflags -static-pie" \
			-o "$out/runc" github.com/opencontainers/runc)
}

build_cni_plugins() {
	local out=$1 w=$2 m=github.com/containernetworking/plugins p pkgs=()
	for p in $CNI_PLUGINS; do pkgs+=("$m/plugins/$p"); done
	(cd "$w" && go mod edit -require="$m@$CNI_PLUGINS_VERSION" &&
		gobuild -ldflags "-s -w -X $m/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" -o "$out/" "${pkgs[@]}")
}

build_small() { # hello and pause: standard library only, built from this directory
	local out=$1
	(cd "$HERE/hello" && go build -trimpath -ldflags "-s -w" -o "$out/hello" .)
	(cd "$HERE/pause" && go build -trimpath -ldflags "-s -w -X main.version=$PAUSE_VERSION" -o "$out/pause" .)
}

# busybox (static, from Debian) gives the flannel image the cp its init containers run.
build_busybox() {
	local out=$1 d=$WORK/busybox
	need_apt_lists
	rm -rf "$d"
	mkdir -p "$d"
	(cd "$d" && apt-get -q -o APT::Sandbox::User=root download busybox-static >/dev/null) || die "apt-get download busybox-static"
	dpkg-deb -x "$d"/busybox-static_*.deb "$d/x"
	install -m755 "$d/x/bin/busybox" "$out/busybox"
}

# ---------------------------------------------------------------- versions from kubeadm's source

kdir=$(moddir "k8s.io/kubernetes@$K8S_VERSION") || die "k8s.io/kubernetes@$K8S_VERSION is not available from the module proxy"
const() { sed -n "s/^[[:space:]]*$1 = \"\(.*\)\"/\1/p" "$kdir/cmd/kubeadm/app/constants/constants.go" | head -1; }
k_etcd=$(sed -n "s/^[[:space:]]*$K8S_MINOR: *\"\([0-9.]*-[0-9]*\)\",.*/\1/p" "$kdir/cmd/kubeadm/app/constants/constants.go" | head -1)
k_etcd=${k_etcd:-$(const DefaultEtcdVersion)}
k_coredns=$(const CoreDNSVersion)
k_pause=$(const PauseVersion)
[ -n "$k_etcd" ] && [ -n "$k_coredns" ] && [ -n "$k_pause" ] || die "cannot read etcd/coredns/pause versions from kubeadm $K8S_VERSION"
if [ -z "$ETCD_VERSION" ]; then
	ETCD_VERSION=$k_etcd COREDNS_VERSION=$k_coredns PAUSE_VERSION=$k_pause
	log "$K8S_VERSION has no row in $VERSIONS_TSV: using kubeadm's etcd $ETCD_VERSION, coredns $COREDNS_VERSION, pause $PAUSE_VERSION"
fi
[ "$ETCD_VERSION $COREDNS_VERSION $PAUSE_VERSION" = "$k_etcd $k_coredns $k_pause" ] ||
	die "version table says etcd $ETCD_VERSION coredns $COREDNS_VERSION pause $PAUSE_VERSION, kubeadm $K8S_VERSION says $k_etcd $k_coredns $k_pause"

STAGE=$OUT.tmp
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/images"

log "mkimage"
(cd "$HERE/mkimage" && go build -trimpath -o "$WORK/mkimage" .)

# ---------------------------------------------------------------- binaries
# One component at a time: each go build already uses every CPU (-p $JOBS).
small=$(component small "$PAUSE_VERSION" build_small "$HERE")
busybox=$(component busybox bookworm build_busybox)
cni=$(component cni-flannel "$CNI_FLANNEL_VERSION" build_cni_flannel "$(prepare cni-flannel)")
containerd=$(component containerd "$CONTAINERD_VERSION" build_containerd "$(prepare containerd)")
runc=$(component runc "$RUNC_VERSION" build_runc "$(prepare runc)")
cniplugins=$(component cni-plugins "$CNI_PLUGINS_VERSION" build_cni_plugins "$(prepare cni-plugins)")
etcd=$(component etcd "$ETCD_VERSION" build_etcd "$(prepare etcd)")
flannel=$(component flannel "$FLANNEL_VERSION" build_flannel "$(prepare flannel)")
coredns=$(component coredns "$COREDNS_VERSION" build_coredns "$(prepare coredns)")
kube=$(component kube "$K8S_VERSION" build_kube "$(prepare kube)")

for b in kubelet kubeadm kubectl; do install -m755 "$kube/$b" "$STAGE/bin/$b"; done
install -m755 "$cni/flannel" "$STAGE/bin/flannel-cni"
for b in containerd containerd-shim-runc-v2 ctr; do install -m755 "$containerd/$b" "$STAGE/bin/$b"; done
install -m755 "$runc/runc" "$STAGE/bin/runc"
mkdir -p "$STAGE/cni"
for p in $CNI_PLUGINS; do install -m755 "$cniplugins/${p#*/}" "$STAGE/cni/${p#*/}"; done
got=$("$STAGE/bin/containerd" --version | awk '{ print $3 }')
[ "$got" = "$CONTAINERD_VERSION" ] || die "containerd --version says $got"
got=$("$STAGE/bin/runc" --version | awk 'NR == 1 { print $3 }')
[ "$got" = "${RUNC_VERSION#v}" ] || die "runc --version says $got"
"$STAGE/bin/runc" --version | grep -q '^libseccomp: ' || die "runc was built without seccomp"

got=$("$STAGE/bin/kubeadm" version -o short)
[ "$got" = "$K8S_VERSION" ] || die "kubeadm version -o short says $got"

# ---------------------------------------------------------------- images

# iptables for kube-proxy and flannel: the build machine's xtables-nft-multi under every iptables name, the
# shared libraries it and its extension modules load (from ldd), the loader, and the extension modules.
iptables_spec() {
	local x mods libs f l lx
	x=$(command -v xtables-nft-multi)
	x=$(readlink -f "$x")
	# the extension directory compiled into libxtables (/usr/lib/<multiarch>/xtables): the image has no
	# merged /usr, so the modules must be at exactly that path
	lx=$(ldd "$x" | awk '/libxtables/ { print $3 }')
	mods=$(grep -aoE '/usr/lib[a-z0-9_/.-]*/xtables' "$(readlink -f "$lx")" | head -1)
	[ -n "$mods" ] && [ -f "$mods/libxt_standard.so" ] || die "no xtables modules directory found (from $lx: '$mods')"
	echo "file $x /usr/sbin/xtables-nft-multi 0755"
	for l in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
		iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save ip6tables-nft-restore; do
		echo "link xtables-nft-multi /usr/sbin/$l"
	done
	for f in "$mods"/*.so; do
		if [ -L "$f" ]; then
			echo "link $(readlink "$f") $f"
		else
			echo "file $f $f 0644"
		fi
	done
	# every library (and the loader) that the binary and the modules need, at the path ldd resolves it to
	libs=$(for f in "$x" "$mods"/*.so; do ldd "$f"; done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | LC_ALL=C sort -u)
	for l in $libs; do echo "file $(readlink -f "$l") $l 0755"; done
}
iptables_spec >"$WORK/iptables.spec"

# nft for kube-proxy's nftables mode (knftables runs the nft binary): the build machine's nft and the
# libraries ldd resolves for it, at those paths.
nft_spec() {
	local x l
	x=$(readlink -f "$(command -v nft)")
	echo "file $x /usr/sbin/nft 0755"
	for l in $(ldd "$x" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | LC_ALL=C sort -u); do
		echo "file $(readlink -f "$l") $l 0755"
	done
}
nft_spec >"$WORK/nft.spec"
log "nft for kube-proxy: $(grep -c . "$WORK/nft.spec") entries from $(dpkg-query -W -f '${Package} ${Version}' nftables 2>/dev/null || echo nftables)"
log "iptables for images: $(grep -c . "$WORK/iptables.spec") entries ($(grep -c '^file .*\.so[.0-9]* /l' "$WORK/iptables.spec") libraries) from $(dpkg-query -W -f '${Package} ${Version}' iptables 2>/dev/null || echo iptables)"

: >"$STAGE/images.txt"
# image FILE REF ENTRYPOINT WANT SPEC [mkimage options]: build images/FILE.tar named REF and check it.
image() {
	local file=$1 ref=$2 ep=$3 want=$4 spec=$5
	shift 5
	log "image $ref"
	"$WORK/mkimage" build -o "$STAGE/images/$file.tar" -name "$ref" -entrypoint "$ep" -arch "$GOARCH" "$@" "$spec" >/dev/null
	"$WORK/mkimage" check -name "$ref" -want "$want" "$STAGE/images/$file.tar" >/dev/null
	echo "$ref $file.tar" >>"$STAGE/images.txt"
}
spec() { # spec NAME LINES...: write a spec file and print its path
	local f=$WORK/$1.spec
	shift
	printf '%s\n' "$@" >"$f"
	echo "$f"
}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
	image $c "$IMAGE_REPOSITORY/$c:$K8S_VERSION" /usr/local/bin/$c /usr/local/bin/$c "$(spec $c "file $kube/$c /usr/local/bin/$c 0755")"
done
spec kube-proxy "file $kube/kube-proxy /usr/local/bin/kube-proxy 0755" >/dev/null
# iptables and nft share libraries (libc, libmnl, ...): each destination once
cat "$WORK/iptables.spec" "$WORK/nft.spec" | awk '$1 != "file" || !seen[$3]++' >>"$WORK/kube-proxy.spec"
image kube-proxy "$IMAGE_REPOSITORY/kube-proxy:$K8S_VERSION" /usr/local/bin/kube-proxy \
	/usr/local/bin/kube-proxy,/usr/sbin/iptables,/usr/sbin/ip6tables-restore,/usr/sbin/nft "$WORK/kube-proxy.spec"
image etcd "$IMAGE_REPOSITORY/etcd:$ETCD_VERSION" /usr/local/bin/etcd /usr/local/bin/etcd,/usr/local/bin/etcdctl,/usr/local/bin/etcdutl \
	"$(spec etcd "file $etcd/etcd /usr/local/bin/etcd 0755" "file $etcd/etcdctl /usr/local/bin/etcdctl 0755" \
		"file $etcd/etcdutl /usr/local/bin/etcdutl 0755" "dir /var/lib/etcd 0700")" -env ETCDCTL_API=3
image pause "$IMAGE_REPOSITORY/pause:$PAUSE_VERSION" /pause /pause "$(spec pause "file $small/pause /pause 0755")"
# kubeadm names CoreDNS <imageRepository>/coredns:<tag> for any repository but registry.k8s.io, for which it
# inserts coredns/ (cmd/kubeadm/app/images GetDNSImage).
coredns_ref=$IMAGE_REPOSITORY/coredns:$COREDNS_VERSION
[ "$IMAGE_REPOSITORY" = registry.k8s.io ] && coredns_ref=$IMAGE_REPOSITORY/coredns/coredns:$COREDNS_VERSION
image coredns "$coredns_ref" /coredns /coredns "$(spec coredns "file $coredns/coredns /coredns 0755")" \
	-port 53/udp -port 53/tcp -port 9153/tcp
spec flannel "file $flannel/flanneld /opt/bin/flanneld 0755" "file $cni/flannel /flannel 0755" \
	"file $busybox/busybox /bin/busybox 0755" "link busybox /bin/sh" "link busybox /bin/cp" "link busybox /bin/mkdir" \
	"link busybox /bin/cat" "link busybox /bin/ls" "link busybox /bin/rm" "link busybox /bin/mv" >/dev/null
cat "$WORK/iptables.spec" >>"$WORK/flannel.spec"
image flannel "$APP_IMAGE_REPOSITORY/flannel:$FLANNEL_VERSION" /opt/bin/flanneld \
	/opt/bin/flanneld,/flannel,/bin/cp,/usr/sbin/iptables "$WORK/flannel.spec"
image hello "$APP_IMAGE_REPOSITORY/hello:$HELLO_TAG" /hello /hello "$(spec hello "file $small/hello /hello 0755")" -port 8080/tcp

# kubeadm must ask for exactly the images built here.
kimages=$("$STAGE/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" --image-repository "$IMAGE_REPOSITORY" 2>/dev/null | LC_ALL=C sort)
ours=$(awk '{ print $1 }' "$STAGE/images.txt" | grep -v -e "^$APP_IMAGE_REPOSITORY/flannel:" -e "^$APP_IMAGE_REPOSITORY/hello:" | LC_ALL=C sort)
[ "$kimages" = "$ours" ] || die "kubeadm config images list differs from the built images:
$(diff <(echo "$kimages") <(echo "$ours"))"
log "kubeadm $K8S_VERSION asks for exactly the built images"

cat >"$STAGE/versions.env" <<EOF
KUBERNETES_VERSION=$K8S_VERSION
ETCD_VERSION=$ETCD_VERSION
COREDNS_VERSION=$COREDNS_VERSION
PAUSE_VERSION=$PAUSE_VERSION
FLANNEL_VERSION=$FLANNEL_VERSION
ETCDCTL_VERSION=$(cat "$etcd/tools-version")
IMAGE_REPOSITORY=$IMAGE_REPOSITORY
APP_IMAGE_REPOSITORY=$APP_IMAGE_REPOSITORY
FLANNEL_CNI_PLUGIN_VERSION=$CNI_FLANNEL_VERSION
CONTAINERD_VERSION=$CONTAINERD_VERSION
RUNC_VERSION=$RUNC_VERSION
CNI_PLUGINS_VERSION=$CNI_PLUGINS_VERSION
PAUSE_IMAGE=$IMAGE_REPOSITORY/pause:$PAUSE_VERSION
COREDNS_IMAGE=$coredns_ref
FLANNEL_IMAGE=$APP_IMAGE_REPOSITORY/flannel:$FLANNEL_VERSION
HELLO_IMAGE=$APP_IMAGE_REPOSITORY/hello:$HELLO_TAG
GO_VERSION=$GOV
ARTIFACTS_HASH=$HASH
EOF

echo "$HASH" >"$STAGE/.complete"
rm -rf "$OUT"
mv "$STAGE" "$OUT"
rm -rf "$WORK"
log "ready: $OUT ($(du -sh "$OUT" | cut -f1))"
echo "ready: $OUT"
