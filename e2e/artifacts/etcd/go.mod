module github.com/clusterctl/clusterctl/e2e/artifacts/etcd

go 1.24

require (
	go.etcd.io/etcd/etcdctl/v3 v3.6.5
	go.etcd.io/etcd/etcdutl/v3 v3.6.5
	go.etcd.io/etcd/server/v3 v3.6.5
)

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.5
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 v3.6.5
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v3.6.5
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 v3.6.5
	go.etcd.io/etcd/server/v3 => go.etcd.io/etcd/server/v3 v3.6.5
)
