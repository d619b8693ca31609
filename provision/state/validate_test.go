package state

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// A record is written by whoever can write the ConfigMap: every field is
// checked as strictly as the spec's, and a bad one is refused, named.
func TestParseRefusesBadRecords(t *testing.T) {
	valid := func() Record {
		r := sample()
		r.SpecDigest = sampleDigest
		r.Git.Commit = strings.Repeat("0123456789", 4)
		return r
	}
	enc := func(r Record) string {
		doc, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(doc)
	}
	if _, err := parse(markRecord+"\n"+enc(valid())+"\n", "prod"); err != nil {
		t.Fatalf("a valid record is refused: %v", err)
	}
	cases := []struct {
		name, field string
		edit        func(r *Record)
		raw         string // instead of edit
	}{
		{name: "other cluster", field: "cluster", edit: func(r *Record) { r.Cluster = "staging" }},
		{name: "host name", field: "hosts[1].name", edit: func(r *Record) { r.Hosts[1].Name = "-x;reboot" }},
		{name: "duplicate host", field: "hosts[1].name", edit: func(r *Record) { r.Hosts[1].Name = "cp1" }},
		{name: "address not an IP", field: "hosts[1].address", edit: func(r *Record) { r.Hosts[1].Address = "evil.example.org -oProxyCommand=id" }},
		{name: "address unspecified", field: "hosts[1].address", edit: func(r *Record) { r.Hosts[1].Address = "0.0.0.0" }},
		{name: "duplicate address", field: "hosts[1].address", edit: func(r *Record) { r.Hosts[1].Address = r.Hosts[0].Address }},
		{name: "port", field: "hosts[1].port", edit: func(r *Record) { r.Hosts[1].Port = 70000 }},
		{name: "negative port", field: "hosts[1].port", edit: func(r *Record) { r.Hosts[1].Port = -1 }},
		{name: "user", field: "hosts[1].user", edit: func(r *Record) { r.Hosts[1].User = "root$(id)" }},
		{name: "long user", field: "hosts[1].user", edit: func(r *Record) { r.Hosts[1].User = strings.Repeat("u", 33) }},
		{name: "role", field: "hosts[1].roles", edit: func(r *Record) { r.Hosts[1].Roles = []string{"etcd"} }},
		{name: "no role", field: "hosts[1].roles", edit: func(r *Record) { r.Hosts[1].Roles = nil }},
		{name: "no hosts", field: "hosts", edit: func(r *Record) { r.Hosts = nil }},
		{name: "too many hosts", field: "hosts", edit: func(r *Record) {
			for len(r.Hosts) <= MaxHosts {
				r.Hosts = append(r.Hosts, r.Hosts[1])
			}
		}},
		{name: "kubernetes version", field: "kubernetesVersion", edit: func(r *Record) { r.KubernetesVersion = "latest" }},
		{name: "distribution", field: "distribution", edit: func(r *Record) { r.Distribution = "openshift" }},
		{name: "spec digest", field: "specDigest", edit: func(r *Record) { r.SpecDigest = "abc" }},
		{name: "git commit", field: "git.commit", edit: func(r *Record) { r.Git.Commit = "HEAD; rm -rf /" }},
		{name: "clusterctl version", field: "clusterctl", edit: func(r *Record) { r.Clusterctl = "v1\x1b[2J" }},
		{name: "applied by", field: "appliedBy", edit: func(r *Record) { r.AppliedBy = "ann\x1b]0;pwned\x07" }},
		{name: "unknown field", field: `"extra"`, raw: strings.Replace(enc(valid()), `"cluster":`, `"extra":1,"cluster":`, 1)},
		{name: "unknown host field", field: `"proxyCommand"`, raw: strings.Replace(enc(valid()), `"name":"w1"`, `"name":"w1","proxyCommand":"id"`, 1)},
		{name: "trailing data", field: "after the record", raw: enc(valid()) + `{"format":1}`},
		{name: "huge", field: "bytes", raw: `{"format":1,"appliedBy":"` + strings.Repeat("x", MaxRecordBytes) + `"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := c.raw
			if doc == "" {
				r := valid()
				c.edit(&r)
				doc = enc(r)
			}
			got, err := parse(markRecord+"\n"+doc+"\n", "prod")
			if err == nil || !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("parse = %+v, %v; want ErrUnreadable naming %s", got, err, c.field)
			}
			if got != nil {
				t.Fatalf("a refused record is returned: %+v", got)
			}
		})
	}
}

// A newer clusterctl's record is refused for its format, not for the
// fields this version does not know.
func TestParseNewerFormatSaysUpgrade(t *testing.T) {
	_, err := parse(markRecord+"\n"+`{"format":2,"newField":true}`+"\n", "prod")
	if err == nil || !strings.Contains(err.Error(), "format 2") || !strings.Contains(err.Error(), "upgrade clusterctl") {
		t.Fatalf("err = %v, want the format named", err)
	}
}

// The digest is the record's bytes as read, so the lock can say which
// record its holder planned against.
func TestParseDigest(t *testing.T) {
	r := sample()
	r.SpecDigest = sampleDigest
	r.Git.Commit = strings.Repeat("0123456789", 4)
	doc, _ := json.Marshal(r)
	a, err := parse(markRecord+"\n"+string(doc)+"\n", "prod")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := parse(markRecord+"\n"+string(doc)+"\n\n", "prod")
	if len(a.Digest) != 64 || b == nil || a.Digest != b.Digest {
		t.Fatalf("digests %q and %+v: want one sha256 of the same bytes", a.Digest, b)
	}
	r.AppliedBy = "bob@desk"
	doc, _ = json.Marshal(r)
	if c, _ := parse(markRecord+"\n"+string(doc)+"\n", "prod"); c == nil || c.Digest == a.Digest {
		t.Fatalf("another record has the same digest")
	}
}

func TestParseErrorMessage(t *testing.T) {
	r := sample()
	r.Hosts[1].Port, r.Hosts[1].User = 0, "x y"
	r.Cluster = "other"
	doc, _ := json.Marshal(r)
	_, err := parse(markRecord+"\n"+string(doc)+"\n", "prod")
	want := `cannot read the cluster's state record: kube-system/clusterctl-state: cluster: "other" is not this spec's cluster "prod"; hosts[1].user: "x y" is not a user name`
	if err == nil || err.Error() != want {
		t.Fatalf("err =\n%v\nwant\n%s", err, want)
	}
}
