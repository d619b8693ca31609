module github.com/clusterctl/clusterctl/e2e/artifacts/cni-flannel

go 1.22

require github.com/containernetworking/plugins v0.9.1
