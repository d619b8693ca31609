module github.com/clusterctl/clusterctl/e2e/artifacts/coredns

go 1.23.0

require github.com/coredns/coredns v1.12.1
