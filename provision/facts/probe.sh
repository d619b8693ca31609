# clusterctl facts probe: read-only, POSIX sh, one round trip.
# Arguments: sysctl keys, "--", module names, "--", package names, "--",
# files whose sha256 the plan compares with what it would write.
# Output: one key=value per line; "end=ok" last, so truncation is detected.
export LC_ALL=C PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
# Every process costs milliseconds on a busy host: kv forks nothing, and
# files are read once into variables rather than grepped per item.
nl='
'
kv() { printf '%s=%s\n' "$1" "${2%%"$nl"*}"; }
first() { printf '%s' "$1" | head -n 1; }
active() { systemctl is-active --quiet "$1" 2>/dev/null && echo yes || echo no; }
# Looking for unit files is much cheaper than asking systemctl for each unit.
unit_exists() {
	for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
		[ -e "$d/$1.service" ] && return 0
	done
	return 1
}

sysctls=; modules=; packages=; files=; part=0
for a in "$@"; do
	if [ "$a" = "--" ]; then part=$((part + 1)); continue; fi
	case $part in
	0) sysctls="$sysctls $a" ;;
	1) modules="$modules $a" ;;
	2) packages="$packages $a" ;;
	*) files="$files $a" ;;
	esac
done

if [ -r /etc/os-release ]; then
	. /etc/os-release
	kv os.id "${ID:-}"; kv os.version "${VERSION_ID:-}"; kv os.like "${ID_LIKE:-}"
fi
kv arch "$(uname -m)"
kv kernel "$(uname -r)"
if [ -d /run/systemd/system ]; then kv init systemd; else kv init other; fi
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then kv cgroup 2; else kv cgroup 1; fi
kv hostname "$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"

if [ -r /proc/swaps ]; then
	tail -n +2 /proc/swaps | while read -r dev _; do kv swap.device "$dev"; done
fi
if [ -r /etc/fstab ]; then
	grep -v '^[[:space:]]*#' /etc/fstab | awk '$3 == "swap" { print }' | while IFS= read -r l; do kv fstab.swap "$l"; done
fi

if command -v getenforce >/dev/null 2>&1; then
	kv selinux "$(getenforce | tr 'A-Z' 'a-z')"
elif [ -r /sys/fs/selinux/enforce ]; then
	if [ "$(cat /sys/fs/selinux/enforce)" = 1 ]; then kv selinux enforcing; else kv selinux permissive; fi
else
	kv selinux absent
fi

for k in $sysctls; do
	f=/proc/sys/$(echo "$k" | tr . /)
	# (dash's read gets one byte at a time, which procfs answers wrongly)
	# missing: the directory exists but not the key (no such parameter);
	# nodir: the directory is absent too (a module may add it later).
	if [ -r "$f" ] && v=$(cat "$f" 2>/dev/null); then kv "sysctl.$k" "$v"
	elif [ -d "${f%/*}" ]; then kv "sysctl.$k!" missing
	else kv "sysctl.$k!" nodir; fi
done

# Built-in code without parameters leaves no trace in /sys/module, and some
# kernels ship no modules.builtin: then the feature's own files are the proof.
feature() {
	case $1 in
	br_netfilter) [ -d /proc/sys/net/bridge ] ;;
	overlay) grep -qw overlay /proc/filesystems ;;
	ip_vs) [ -e /proc/net/ip_vs ] ;;
	nf_conntrack) [ -e /proc/sys/net/netfilter/nf_conntrack_max ] ;;
	*) false ;;
	esac
}
builtin_list=/lib/modules/$(uname -r)/modules.builtin
loaded="$nl$(cut -d' ' -f1 /proc/modules 2>/dev/null)$nl"
builtins="$nl$(cat "$builtin_list" 2>/dev/null)$nl"
for m in $modules; do
	case $loaded in *"$nl$m$nl"*) kv "module.$m" loaded; continue ;; esac
	case $builtins in *"/$m.ko$nl"* | *"/$m.ko."*) kv "module.$m" builtin; continue ;; esac
	if false; then :
	elif [ -d "/sys/module/$m" ] && [ ! -e "/sys/module/$m/initstate" ]; then kv "module.$m" builtin
	elif feature "$m"; then kv "module.$m" builtin
	elif modinfo "$m" >/dev/null 2>&1; then kv "module.$m" available
	else kv "module.$m" missing; fi
done

if command -v apt-get >/dev/null 2>&1; then pm=apt
elif command -v dnf >/dev/null 2>&1; then pm=dnf
elif command -v yum >/dev/null 2>&1; then pm=yum
else pm=; fi
kv pkgmgr "$pm"
if [ -n "$packages" ]; then
	case $pm in
	apt)
		# One dpkg-query for all packages; absent ones print nothing.
		installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' $packages 2>/dev/null | awk '$2 == "ii" { print $1 "=" $3 }')
		for p in $packages; do
			kv "pkg.$p" "$(printf '%s\n' "$installed" | awk -F= -v p="$p" '$1 == p { print $2; exit }')"
		done ;;
	dnf | yum)
		for p in $packages; do kv "pkg.$p" "$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$p" 2>/dev/null || true)"; done ;;
	*)
		for p in $packages; do kv "pkg.$p" ""; done ;;
	esac
fi

fw=none
if unit_exists firewalld; then fw=firewalld; elif command -v ufw >/dev/null 2>&1; then fw=ufw; fi
kv firewall $fw
case $fw in
firewalld) kv firewall.active "$(active firewalld)" ;;
ufw) if ufw status 2>/dev/null | grep -q 'Status: active'; then kv firewall.active yes; else kv firewall.active no; fi ;;
*) kv firewall.active no ;;
esac

ts=none
for u in chrony chronyd systemd-timesyncd; do
	if unit_exists $u; then ts=$u; break; fi
done
case $ts in chronyd) ts=chrony; tsu=chronyd ;; *) tsu=$ts ;; esac
kv timesync $ts
if [ $ts != none ]; then kv timesync.active "$(active $tsu)"; else kv timesync.active no; fi

if command -v containerd >/dev/null 2>&1; then
	kv containerd "$(containerd --version 2>/dev/null | awk '{print $3}')"
	kv containerd.active "$(active containerd)"
fi
if command -v kubelet >/dev/null 2>&1; then kv kubelet "$(first "$(kubelet --version 2>/dev/null)" | awk '{print $2}')"; fi
if command -v kubeadm >/dev/null 2>&1; then kv kubeadm "$(kubeadm version -o short 2>/dev/null)"; fi
if command -v k3s >/dev/null 2>&1; then kv k3s "$(first "$(k3s --version 2>/dev/null)" | awk '{print $3}')"; fi

dirs=
for d in / /var /var/lib/containerd /var/lib/kubelet; do [ -d "$d" ] && dirs="$dirs $d"; done
set -- $dirs
df -Pm $dirs 2>/dev/null | awk 'NR > 1 { print $4 }' | while read -r free; do
	kv "disk.$1" "$free"
	shift
done
for f in $files; do
	if [ -f "$f" ] && [ -r "$f" ]; then kv "file.$f" "$(sha256sum < "$f" | awk '{print $1}')"
	elif [ -e "$f" ]; then kv "file.$f" unreadable
	else kv "file.$f" missing; fi
done
units=
for u in containerd kubelet k3s k3s-agent haproxy; do unit_exists $u && units="$units $u"; done
if [ -n "$units" ]; then
	# One systemctl call each for all units: answers come in order.
	en=$(systemctl is-enabled $units 2>/dev/null || true)
	ac=$(systemctl is-active $units 2>/dev/null || true)
	i=0
	for u in $units; do
		i=$((i + 1))
		kv "service.$u" "$(printf '%s\n' "$en" | sed -n "${i}p")/$(printf '%s\n' "$ac" | sed -n "${i}p")"
	done
fi
grep -v '^[[:space:]]*#' /etc/hosts 2>/dev/null | grep -v '^[[:space:]]*$' | while IFS= read -r l; do kv etchosts "$l"; done
kv end ok
