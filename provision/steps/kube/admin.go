package kube

// Admin says how cluster-wide steps (CNI, manifests, health) act as the
// cluster admin on a control plane: the kubectl command line, with its
// admin kubeconfig, and that kubeconfig's path, whose absence means the
// cluster is still to be made. Distribution drivers differ only here.
type Admin struct {
	Kubectl    string `json:"kubectl"`
	Kubeconfig string `json:"kubeconfig"`
}

// OrKubeadm is a, or kubeadm's admin.conf and kubectl when a is zero, so
// ops built without an Admin keep working as the kubeadm driver's.
func (a Admin) OrKubeadm() Admin {
	if a.Kubectl == "" {
		return Admin{Kubectl: Kubectl, Kubeconfig: AdminConf}
	}
	return a
}
