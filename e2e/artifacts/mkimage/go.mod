module github.com/clusterctl/clusterctl/e2e/artifacts/mkimage

go 1.22
