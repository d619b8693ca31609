package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

const listNodes = kube.Kubectl + " get nodes -o name"

func TestDrainNode(t *testing.T) {
	ctx := context.Background()
	op := kube.DrainNode{Node: "h3", Timeout: "2m"}
	cp := hosttest.NewFake(t, "h1")
	cp.Expect(listNodes).Stdout("node/h1\nnode/h2\nnode/h3\n").Times(2)
	cp.Expect(kube.Kubectl + " cordon h3 && " + kube.Kubectl + " drain h3 --ignore-daemonsets --delete-emptydir-data --timeout=2m0s")
	tg := step.Target{Host: cp}
	if ch, err := op.Check(ctx, tg); err != nil || ch.Action != step.ActionDelete {
		t.Fatalf("Check = %+v, %v", ch, err)
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	// Gone already: nothing to do, nothing sent but the look.
	cp2 := hosttest.NewFake(t, "h1")
	cp2.Expect(listNodes).Stdout("node/h1\nnode/h33\n").Times(2)
	if ch, err := op.Check(ctx, step.Target{Host: cp2}); err != nil || ch.Action != step.ActionNone {
		t.Fatalf("Check of a gone node = %+v, %v", ch, err)
	}
	if err := op.Apply(ctx, step.Target{Host: cp2}); err != nil {
		t.Fatal(err)
	}
	if _, err := (kube.DrainNode{Node: "h3; reboot"}).Check(ctx, step.Target{Host: hosttest.NewFake(t, "h1")}); err == nil {
		t.Fatal("a hostile node name was accepted")
	}
}

const members = `{"header":{"cluster_id":1},"members":[
 {"ID":11400000000000000001,"name":"h1","clientURLs":["https://10.0.0.1:2379"]},
 {"ID":2,"name":"h2","clientURLs":["https://10.0.0.2:2379"]},
 {"ID":3,"name":"h3","clientURLs":["https://10.0.0.3:2379"]}]}`

func TestRemoveEtcdMember(t *testing.T) {
	ctx := context.Background()
	list := kube.EtcdCtl("h1", "member", "list", "-w", "json")
	health := kube.EtcdCtl("h1", "endpoint", "health", "-w", "json", "--endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379") + " || true"
	for _, tc := range []struct {
		name, health string
		removed      bool
		err          error
	}{
		{name: "healthy quorum left", health: `[{"endpoint":"https://10.0.0.1:2379","health":true},{"endpoint":"https://10.0.0.2:2379","health":true}]`, removed: true},
		{name: "one of two left healthy", health: `[{"endpoint":"https://10.0.0.1:2379","health":true},{"endpoint":"https://10.0.0.2:2379","health":false}]`, err: kube.ErrQuorum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := hosttest.NewFake(t, "h1")
			cp.Expect(list).Stdout(members)
			cp.Expect(health).Stdout(tc.health)
			if tc.removed {
				cp.Expect(kube.EtcdCtl("h1", "member", "remove", "3"))
			}
			err := kube.RemoveEtcdMember{Member: "h3", Via: "h1"}.Apply(ctx, step.Target{Host: cp})
			if !errors.Is(err, tc.err) {
				t.Fatalf("Apply = %v, want %v", err, tc.err)
			}
			if tc.err != nil && !strings.Contains(err.Error(), "leaves 2 members of which 1 are healthy, and 2 are needed") {
				t.Errorf("error does not explain the quorum: %v", err)
			}
		})
	}
	// The member IDs are 64-bit and removed by their hex form.
	cp := hosttest.NewFake(t, "h3")
	cp.Expect(kube.EtcdCtl("h3", "member", "list", "-w", "json")).Stdout(members)
	cp.Expect(kube.EtcdCtl("h3", "endpoint", "health", "-w", "json", "--endpoints=https://10.0.0.2:2379,https://10.0.0.3:2379") + " || true").
		Stdout(`[{"endpoint":"https://10.0.0.2:2379","health":true},{"endpoint":"https://10.0.0.3:2379","health":true}]`)
	cp.Expect(kube.EtcdCtl("h3", "member", "remove", "9e34ef99a7740001"))
	if err := (kube.RemoveEtcdMember{Member: "h1", Via: "h3"}).Apply(ctx, step.Target{Host: cp}); err != nil {
		t.Fatal(err)
	}
	// Not a member (already removed): no change.
	cp2 := hosttest.NewFake(t, "h1")
	cp2.Expect(list).Stdout(`{"members":[{"ID":1,"name":"h1"}]}`)
	if ch, err := (kube.RemoveEtcdMember{Member: "h3", Via: "h1"}).Check(ctx, step.Target{Host: cp2}); err != nil || ch.Action != step.ActionNone {
		t.Fatalf("Check = %+v, %v", ch, err)
	}
}
