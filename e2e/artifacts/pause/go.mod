module github.com/clusterctl/clusterctl/e2e/artifacts/pause

go 1.22
