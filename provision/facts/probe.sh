# clusterctl facts probe: read-only, POSIX sh, one round trip.
# Arguments: sysctl keys, "--", module names, "--", package names, "--",
# files whose sha256 the plan compares with what it would write.
# Output: one key=value per line; "end=ok" last, so truncation is detected.
export LC_ALL=C PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\r' '  ')"; }
first() { printf '%s' "$1" | head -n 1; }
active() { systemctl is-active --quiet "$1" 2>/dev/null && echo yes || echo no; }
unit_exists() { systemctl list-unit-files "$1.service" 2>/dev/null | grep -q "^$1.service"; }

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
	f=/proc/sys/$(printf '%s' "$k" | tr . /)
	if [ -r "$f" ]; then kv "sysctl.$k" "$(tr '\t' ' ' < "$f")"; else kv "sysctl.$k!" missing; fi
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
for m in $modules; do
	if grep -q "^$m " /proc/modules 2>/dev/null; then kv "module.$m" loaded
	elif [ -r "$builtin_list" ] && grep -Eq "/$m\.ko(\.[a-z]+)?\$" "$builtin_list"; then kv "module.$m" builtin
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
for p in $packages; do
	v=
	case $pm in
	apt) v=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$p" 2>/dev/null | awk '$1 == "ii" { print $2 }') ;;
	dnf | yum) v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$p" 2>/dev/null) || v= ;;
	esac
	kv "pkg.$p" "$v"
done

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

for d in / /var /var/lib/containerd /var/lib/kubelet; do
	[ -d "$d" ] && kv "disk.$d" "$(df -Pm "$d" 2>/dev/null | awk 'NR == 2 { print $4 }')"
done
for f in $files; do
	if [ -f "$f" ] && [ -r "$f" ]; then kv "file.$f" "$(sha256sum < "$f" | awk '{print $1}')"
	elif [ -e "$f" ]; then kv "file.$f" unreadable
	else kv "file.$f" missing; fi
done
for u in containerd kubelet k3s k3s-agent; do
	if unit_exists $u; then kv "service.$u" "$(systemctl is-enabled $u 2>/dev/null || true)/$(systemctl is-active $u 2>/dev/null || true)"; fi
done
grep -v '^[[:space:]]*#' /etc/hosts 2>/dev/null | grep -v '^[[:space:]]*$' | while IFS= read -r l; do kv etchosts "$l"; done
kv end ok
