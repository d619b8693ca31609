//go:build integration

package ssh_test

import (
	"context"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	sshx "github.com/clusterctl/clusterctl/provision/transport/ssh"
)

func BenchmarkRunOnOpenConn(b *testing.B) {
	c := cluster(b)
	conn := dial(b, hostConfig(c, 1, "root"))
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if err := conn.Run(ctx, host.Cmd{Line: "true"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDial(b *testing.B) {
	c := cluster(b)
	cfg := hostConfig(c, 1, "root")
	ctx := context.Background()
	for b.Loop() {
		conn, err := sshx.Dial(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
