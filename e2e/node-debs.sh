#!/usr/bin/env bash
# node-debs.sh OUT [RELEASE [PACKAGE...]]: the .debs a test host needs beyond its base system
# (conntrack, socat, ethtool, ipset, time
# sync, and haproxy for node-local API server endpoints: hostprep installs
# it only on clusters that use one), resolved by apt against the test-host rootfs's own dpkg status so
# exactly the missing dependencies come along, downloaded once into a cache
# and linked into OUT/debs/. `clusterctl bundle --from OUT` then bundles them.
# RELEASE is the test hosts' Debian release (trixie, the default, or bookworm): another release than the
# machine's is resolved with a private apt configuration against the same mirror. Further PACKAGEs are added
# (the upgrade scenario's first cluster runs Debian's containerd, as clusters made before clusterctl built its own).
set -euo pipefail
out=${1:?usage: node-debs.sh OUT}
cache=${CLUSTERCTL_CACHE:-/var/cache/clusterctl}
release=${2:-trixie}
rootfs=$cache/testhosts/rootfs-$release
debs=$cache/debs
packages=(conntrack socat ethtool ipset nftables systemd-timesyncd haproxy "${@:3}")

if [ ! -f "$rootfs/var/lib/dpkg/status" ]; then
	TESTHOSTS_RELEASE=$release bash "$(dirname "$0")/testhosts/make-rootfs.sh" >&2
fi
apt=(apt-get)
if [ "$release" != "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" ]; then
	# shellcheck source=testhosts/lib.sh
	. "$(dirname "$0")/testhosts/lib.sh"
	a=$cache/apt-$release
	mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(th_mirror) $release main" >"$a/sources.list"
	apt=(apt-get -o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache")
fi
resolve() {
	"${apt[@]}" -s -o Dir::State::status="$rootfs/var/lib/dpkg/status" --no-install-recommends install "${packages[@]}" 2>/dev/null |
		sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p'
}
pins=$(resolve || true)
if [ -z "$pins" ]; then
	"${apt[@]}" update -qq >&2 # a fresh machine has no package lists yet
	pins=$(resolve)
fi
mkdir -p "$debs" "$out/debs"
missing=()
for p in $pins; do
	name=${p%%=*} ver=${p#*=}
	file=$(ls "$debs/${name}_$(printf '%s' "$ver" | sed 's/:/%3a/')_"*.deb 2>/dev/null | head -n 1 || true)
	[ -n "$file" ] || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "node-debs: downloading ${missing[*]}" >&2
	(cd "$debs" && "${apt[@]}" download -q "${missing[@]}" >&2)
fi
rm -f "$out/debs/"*.deb
for p in $pins; do
	name=${p%%=*} ver=${p#*=}
	file=$(ls "$debs/${name}_$(printf '%s' "$ver" | sed 's/:/%3a/')_"*.deb)
	ln -f "$file" "$out/debs/" 2>/dev/null || cp "$file" "$out/debs/"
done
echo "node-debs: $(ls "$out/debs" | wc -l) packages in $out/debs" >&2
