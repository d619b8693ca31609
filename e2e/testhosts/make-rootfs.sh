#!/bin/bash
# make-rootfs.sh [--force]: build, once, the Debian root filesystem ($TESTHOSTS_RELEASE) that every namespace test host
# uses (read-only) as its overlay lower dir, and the SSH key pair that root, tester and tester-pw accept.
#
# Output: $TESTHOSTS_CACHE/rootfs-$TESTHOSTS_RELEASE (+ .stamp, written last) and $TESTHOSTS_CACHE/keys/id_ed25519.
# Skipped when the stamp says the rootfs is complete and matches this recipe, the key and the running kernel.
# Needs root; installs its own tools (mmdebstrap, iproute2, iptables, openssh-client) with apt-get.
# The Debian mirror is the one this machine's apt uses (or $TESTHOSTS_MIRROR).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_check

# Bump when anything below changes: cached rootfs with another recipe are rebuilt.
RECIPE=1
PACKAGES=openssh-server,openssh-sftp-server,systemd,systemd-sysv,dbus,iproute2,iptables,sudo,procps,kmod,ca-certificates,python3,curl
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

install_deps() {
	local missing=() c p
	for c in mmdebstrap:mmdebstrap ip:iproute2 iptables:iptables ssh:openssh-client ssh-keygen:openssh-client \
		nsenter:util-linux unshare:util-linux flock:util-linux zcat:gzip; do
		command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
	done
	[ ${#missing[@]} = 0 ] && return
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	th_log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	for p in "${missing[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || th_die "could not install $p"; done
}

# modules_builtin ROOT: make `modprobe X` inside hosts succeed for modules built into the running kernel (as
# modules.builtin lists them on a distro kernel) and fail for missing ones (e.g. ip_vs here).
modules_builtin() {
	local r=$1 k m
	k=$(uname -r)
	[ -r /proc/config.gz ] || { th_log "no /proc/config.gz: modprobe inside hosts will fail for every module"; return; }
	declare -A mods=([overlay]=OVERLAY_FS [br_netfilter]=BRIDGE_NETFILTER [bridge]=BRIDGE [veth]=VETH [vxlan]=VXLAN
		[nf_conntrack]=NF_CONNTRACK [nf_nat]=NF_NAT [ip_tables]=IP_NF_IPTABLES [iptable_filter]=IP_NF_FILTER
		[iptable_nat]=IP_NF_NAT [iptable_mangle]=IP_NF_MANGLE [xt_conntrack]=NETFILTER_XT_MATCH_CONNTRACK
		[ip_set]=IP_SET [nf_tables]=NF_TABLES [ip_vs]=IP_VS [ip_vs_rr]=IP_VS_RR [ip_vs_wrr]=IP_VS_WRR
		[ip_vs_sh]=IP_VS_SH [wireguard]=WIREGUARD [tun]=TUN [dummy]=DUMMY)
	mkdir -p "$r/lib/modules/$k"
	local cfg; cfg=$(zcat /proc/config.gz)
	for m in "${!mods[@]}"; do
		if grep -q "^CONFIG_${mods[$m]}=y" <<<"$cfg"; then echo "kernel/builtin/$m.ko"; fi
	done | sort >"$r/lib/modules/$k/modules.builtin"
	chroot "$r" depmod "$k" 2>/dev/null || true
}

customize() {
	local r=$1 u home
	chroot "$r" useradd -m -s /bin/bash tester
	chroot "$r" useradd -m -s /bin/bash tester-pw
	echo 'tester-pw:testpass' | chroot "$r" chpasswd
	for u in root tester tester-pw; do
		home=/home/$u; [ $u = root ] && home=/root
		install -d -m 700 "$r$home/.ssh"
		install -m 600 "$TH_KEY.pub" "$r$home/.ssh/authorized_keys"
		chroot "$r" chown -R "$u:$u" "$home/.ssh"
	done
	echo 'tester ALL=(ALL:ALL) NOPASSWD: ALL' >"$r/etc/sudoers.d/tester"
	echo 'tester-pw ALL=(ALL:ALL) ALL' >"$r/etc/sudoers.d/tester-pw"
	chmod 440 "$r/etc/sudoers.d/tester" "$r/etc/sudoers.d/tester-pw"
	chroot "$r" visudo -cq

	# Each host generates its own ed25519 host key at first boot (its own fingerprint, as real machines have).
	rm -f "$r"/etc/ssh/ssh_host_*
	echo 'HostKey /etc/ssh/ssh_host_ed25519_key' >"$r/etc/ssh/sshd_config.d/10-testhosts.conf"
	cat >"$r/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this host's SSH host key on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
RequiredBy=ssh.service
UNIT
	chroot "$r" systemctl enable ssh-hostkeys.service ssh.service >/dev/null 2>&1
	: >"$r/etc/machine-id" # systemd makes a fresh one per host at boot

	# The hosts have no DNS server to reach: fail lookups at once instead of timing out.
	echo "nameserver 127.0.0.1" >"$r/etc/resolv.conf"
	# No gettys (no consoles) and no timers (apt/man-db jobs would eat the 2 cores at random times).
	for u in getty@tty1.service serial-getty@.service console-getty.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	rm -f "$r"/etc/systemd/system/timers.target.wants/* "$r"/etc/systemd/system/getty.target.wants/*
	# The kernel is the machine's: boot-time sysctls outside net.* would change the machine itself.
	local f
	for f in "$r"/usr/lib/sysctl.d/*.conf; do
		[ -f "$f" ] || continue
		grep -Eq '^[[:space:]]*-?(kernel|vm|fs)\.' "$f" || continue
		chroot "$r" dpkg-divert --quiet --local --rename "${f#"$r"}"
	done
	modules_builtin "$r"
}

install_deps
mkdir -p "$TH_CACHE/keys" "$TH_CACHE/runs"
exec 9>"$TH_CACHE/rootfs-$TH_RELEASE.lock"
flock 9 # parallel test packages: one builds, the others wait and then find it ready
[ -f "$TH_KEY" ] || ssh-keygen -q -t ed25519 -N "" -C clusterctl-testhosts -f "$TH_KEY"
want="recipe=$RECIPE kernel=$(uname -r) key=$(ssh-keygen -lf "$TH_KEY.pub" | awk '{print $2}')"
if [ $FORCE = 0 ] && [ -d "$TH_ROOTFS" ] && [ "$(cat "$TH_STAMP" 2>/dev/null)" = "$want" ]; then
	echo "rootfs ready: $TH_ROOTFS (cached)"
	exit 0
fi

m=$(th_mirror)
th_log "building $TH_ROOTFS from $m"
rm -f "$TH_STAMP"
rm -rf "$TH_ROOTFS.tmp"
mkdir -p "$TH_ROOTFS.tmp"
TMPDIR=$TH_CACHE mmdebstrap --quiet --variant=minbase --include="$PACKAGES" "$TH_RELEASE" "$TH_ROOTFS.tmp" "$m"
customize "$TH_ROOTFS.tmp"
# Hosts still running on an older rootfs lose their lower dir here; rebuilds only follow recipe/kernel/key changes.
rm -rf "$TH_ROOTFS"
mv "$TH_ROOTFS.tmp" "$TH_ROOTFS"
sync
echo "$want" >"$TH_STAMP"
echo "rootfs ready: $TH_ROOTFS"
