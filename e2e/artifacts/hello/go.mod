module github.com/clusterctl/clusterctl/e2e/artifacts/hello

go 1.22
