# clusterctl kube/reset: tear Kubernetes down on this host and leave it a
# prepared host. Kept: the user's files, host preparation (sysctl, modules,
# packages), containerd and its images, the kubelet/kubeadm/kubectl
# binaries and the kubelet unit, clusterctl's logs. Every part is skipped
# when there is nothing to do, so it can run again after a failure.
# Arguments: CRI socket, log directory, "keep-member" or "remove-member"
# (of a control plane leaving a cluster that lives on). Problems go to stderr; clusterctl
# looks at the host again afterwards and reports what is left.
# The whole script is one function, read completely before it runs with
# stdin from /dev/null: no command can swallow the rest of the script
# (it arrives on sh -s's stdin).
reset_node() {
	cri=$1
	logdir=$2
	member=$3
	warn() { echo "reset: $*" >&2; }

	# 1. kubeadm reset: stops the kubelet, removes the pods through the CRI,
	# unmounts pod volumes and clears kubeadm's files. Its etcd-member phase
	# runs only for a control plane leaving a cluster that lives on: when the
	# whole cluster goes, there is no one to tell (and no one to wait for).
	if command -v kubeadm >/dev/null 2>&1; then
		skip="--skip-phases=remove-etcd-member"
		[ "$member" = remove-member ] && skip=""
		install -d -m 0700 -- "$logdir"
		# shellcheck disable=SC2086
		if ! (umask 077 && timeout 300 kubeadm reset -f --cri-socket "$cri" $skip --cleanup-tmp-dir >"$logdir/kubeadm-reset.log" 2>&1); then
			warn "kubeadm reset failed (its output: $logdir/kubeadm-reset.log); cleaning up without it"
		fi
	fi

	# 2. The kubelet stays installed but stopped and disabled: apply enables it
	# again when the host rejoins.
	if systemctl cat kubelet.service >/dev/null 2>&1; then
		systemctl stop kubelet.service || warn "cannot stop the kubelet"
		systemctl disable --quiet kubelet.service 2>/dev/null || warn "cannot disable the kubelet"
	fi

	# 3. Containers kubeadm could not remove (no kubeadm, or it failed). The
	# CRI plugin keeps its own record of pods: containerd restarts so it
	# forgets the removed ones (running containers of other namespaces live on
	# in their shims).
	if command -v ctr >/dev/null 2>&1; then
		left=$(ctr -n k8s.io containers ls -q 2>/dev/null)
		if [ -n "$left" ]; then
			for c in $left; do ctr -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
			for c in $left; do
				ctr -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
				ctr -n k8s.io containers delete "$c" >/dev/null 2>&1 || warn "cannot delete container $c"
			done
			systemctl restart containerd.service || warn "cannot restart containerd"
		fi
	fi

	# 4. Pod volumes still mounted under the kubelet's directory, deepest
	# first; the directory itself may be a mount point of its own and stays.
	awk '$2 ~ "^/var/lib/kubelet/" { print $2 }' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" || warn "cannot unmount $m"
	done
	for n in /var/run/netns/cni-*; do
		[ -e "$n" ] && { ip netns delete "${n##*/}" || warn "cannot delete network namespace $n"; }
	done

	# 5. The distribution's state. Directories that may be mount points are
	# emptied, not removed.
	rm -f -- /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/kubelet.conf \
		/etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/controller-manager.conf /etc/kubernetes/scheduler.conf
	rm -rf -- /etc/kubernetes/pki /etc/kubernetes/manifests /etc/kubernetes/tmp /etc/kubernetes/clusterctl \
		/var/lib/cni /run/flannel /var/lib/clusterctl/etcd-snapshots
	for d in /var/lib/etcd /var/lib/kubelet /etc/cni/net.d; do
		[ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
	done

	# 6. Interfaces the CNI and kube-proxy made.
	ipvs=no
	for i in cni0 flannel.1 flannel-v6.1 kube-ipvs0; do
		if [ -e "/sys/class/net/$i" ]; then
			[ "$i" = kube-ipvs0 ] && ipvs=yes
			ip link delete "$i" || warn "cannot delete interface $i"
		fi
	done
	if [ $ipvs = yes ] && command -v ipvsadm >/dev/null 2>&1; then
		ipvsadm --clear || warn "cannot clear the IPVS tables"
	fi

	# 7. Packet filter rules of kube-proxy, the kubelet and flannel: every rule
	# and chain naming KUBE-* or FLANNEL*, in one atomic restore per family;
	# everything else (the host's own firewall) is kept as it is.
	for t in iptables ip6tables; do
		command -v "$t-save" >/dev/null 2>&1 || continue
		if "$t-save" 2>/dev/null | grep -qE '^:(KUBE-|FLANNEL)'; then
			"$t-save" 2>/dev/null | grep -vE 'KUBE-|FLANNEL' | "$t-restore" || warn "$t: cannot remove the Kubernetes rules"
		fi
	done
	if command -v nft >/dev/null 2>&1; then
		nft list tables 2>/dev/null | while read -r _ family name; do
			if [ "$name" = kube-proxy ]; then
				nft delete table "$family" "$name" || warn "cannot delete nftables table $family $name"
			fi
		done
	fi
	# What is left is for clusterctl's second look to report, not an exit status.
	return 0
}
set -u
reset_node "$@" </dev/null
