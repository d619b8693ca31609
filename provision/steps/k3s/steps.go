package k3s

import (
	"context"

	"github.com/clusterctl/clusterctl/provision/step"
)

func (o Init) member() member {
	return member{kind: o.Kind(), role: RoleServer, first: true, cluster: o.Cluster, node: o.Node, runtime: o.Runtime}
}

// Check: see member.check; the first server is asked of itself.
func (o Init) Check(ctx context.Context, t step.Target) (step.Change, error) {
	return o.member().check(ctx, t, o.Describe())
}

// Apply starts (or reconfigures) the first server and waits until its API
// answers; its token stays on it, where the joins read it.
func (o Init) Apply(ctx context.Context, t step.Target) error { return o.member().apply(ctx, t) }

func (o JoinServer) member() member {
	return member{kind: o.Kind(), role: RoleServer, cluster: o.Cluster, node: o.Node, runtime: o.Runtime, via: o.Via}
}

// Check: see member.check; a running server must be an etcd voter.
func (o JoinServer) Check(ctx context.Context, t step.Target) (step.Change, error) {
	return o.member().check(ctx, t, o.Describe())
}

// Apply joins the server with the server token and waits until its etcd
// member votes, so the next server joins a cluster at full strength.
func (o JoinServer) Apply(ctx context.Context, t step.Target) error { return o.member().apply(ctx, t) }

func (o JoinAgent) member() member {
	return member{kind: o.Kind(), role: RoleAgent, cluster: o.Cluster, node: o.Node, runtime: o.Runtime, via: o.Via}
}

// Check: see member.check.
func (o JoinAgent) Check(ctx context.Context, t step.Target) (step.Change, error) {
	return o.member().check(ctx, t, o.Describe())
}

// Apply joins the agent with the agent token and waits until it registers.
func (o JoinAgent) Apply(ctx context.Context, t step.Target) error { return o.member().apply(ctx, t) }
