#!/bin/bash
# init.sh: PID 1 of a test host's new pid/mount/uts/ipc/cgroup namespaces, already inside its network
# namespace (up.sh starts it). Builds the host's root (overlay of the shared rootfs + the host's own upper
# dir), mounts what systemd and a kubelet expect, then execs systemd. Its output goes to the host's console.log.
#
# Environment (from up.sh): TH_I host number, TH_HOSTDIR, TH_ROOTFS, TH_NET, TH_MAX, TH_CGV2 (1 on a pure
# cgroup v2 machine), TH_CGMOUNTS (v1 hierarchies' mount options, e.g. "cpu cpuacct ... name=systemd").
set -euo pipefail
H=$TH_HOSTDIR
R=$H/root

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$TH_ROOTFS,upperdir=$H/upper,workdir=$H/work" "$R"
# Overlay on overlay is refused: containerd's snapshotter, the kubelet and etcd need a plain filesystem.
for d in containerd kubelet etcd; do
	mkdir -p "$R/var/lib/$d"
	mount --bind "$H/data/$d" "$R/var/lib/$d"
done
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
if [ "$TH_CGV2" = 1 ]; then # pure cgroup v2 machine: UNTESTED (the machines this was built on are v1 hybrid)
	mount -t cgroup2 -o nsdelegate cgroup2 "$R/sys/fs/cgroup"
else
	# v1 hybrid: mount the hierarchies exactly as the machine has them; systemd's own combined cpu,cpuacct
	# mount fails where the machine has them split.
	mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs "$R/sys/fs/cgroup"
	for o in $TH_CGMOUNTS; do
		d=${o#name=}
		mkdir -p "$R/sys/fs/cgroup/$d"
		mount -t cgroup -o "$o" cgroup "$R/sys/fs/cgroup/$d"
	done
	mkdir -p "$R/sys/fs/cgroup/unified"
	mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup/unified"
fi
mount -t tmpfs -o mode=755,nosuid,size=64m tmpfs "$R/dev"
(
	cd "$R/dev"
	mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
	mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
	mknod -m 600 kmsg c 1 11 # the kubelet's OOM watcher reads it
	mkdir -m 755 net; mknod -m 666 net/tun c 10 200
	mkdir pts shm
	ln -s pts/ptmx ptmx; ln -s /proc/self/fd fd; ln -s /proc/self/fd/0 stdin
	ln -s /proc/self/fd/1 stdout; ln -s /proc/self/fd/2 stderr; touch console
)
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"

hostname "h$TH_I"
echo "h$TH_I" >"$R/etc/hostname"
{
	echo "127.0.0.1 localhost"
	echo "::1 localhost ip6-localhost ip6-loopback"
	for ((n = 1; n <= TH_MAX; n++)); do echo "$TH_NET.$((10 + n)) h$n"; done
} >"$R/etc/hosts"

cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot 2>/dev/null || true
mount --make-rshared / # the kubelet needs shared propagation; systemd does not set it inside a container
export container=testhost-netns
if [ "${TH_RELEASE:-bookworm}" = bookworm ]; then
	exec /sbin/init
fi
# systemd 256 and later refuse to boot on cgroup v1 (this machine's hybrid hierarchy) unless forced. In a
# container systemd reads its "kernel command line" from PID 1's own arguments.
if [ "$TH_CGV2" = 1 ]; then
	exec /sbin/init
fi
exec /sbin/init SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1 systemd.unified_cgroup_hierarchy=0
