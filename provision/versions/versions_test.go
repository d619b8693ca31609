package versions

import (
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	all := All()
	if len(all) < 3 {
		t.Fatalf("%d minors", len(all))
	}
	supported := 0
	for i, m := range all {
		if i > 0 && m.Minor != all[i-1].Minor-1 {
			t.Errorf("minor 1.%d follows 1.%d: want newest first, no gaps", m.Minor, all[i-1].Minor)
		}
		if m.Supported {
			supported++
			if i >= 3 {
				t.Errorf("%s is supported but not one of the three newest", m.Name())
			}
		}
		for _, v := range []string{m.Etcd, m.CoreDNS, m.Pause, m.KubeadmAPI} {
			if v == "" || v == "-" {
				t.Errorf("%s: empty component version in %+v", m.Name(), m)
			}
		}
		if m.Containerd1 != "fallback" && m.Containerd1 != "refused" {
			t.Errorf("%s: containerd1 %q", m.Name(), m.Containerd1)
		}
		if m.CgroupV1 != "default" && m.CgroupV1 != "optIn" && m.CgroupV1 != "refused" {
			t.Errorf("%s: cgroupV1 %q", m.Name(), m.CgroupV1)
		}
	}
	if supported != 3 {
		t.Errorf("%d supported minors, want the three newest", supported)
	}
	if Window() != "1.35, 1.36 and 1.37" {
		t.Errorf("window %q", Window())
	}
	if Default() != "1.37.2" || Oldest().Name() != "1.33" || Newest().Name() != "1.37" {
		t.Errorf("default %s, oldest %s, newest %s", Default(), Oldest().Name(), Newest().Name())
	}
}

func TestLookup(t *testing.T) {
	for v, want := range map[string]string{"1.37.2": "3.7.0-0", "v1.36.0": "3.6.8-0", "1.35.1+k3s1": "3.6.6-0"} {
		m, ok := Lookup(v)
		if !ok || m.Etcd != want {
			t.Errorf("Lookup(%s) = %+v, %v; want etcd %s", v, m, ok, want)
		}
	}
	for _, v := range []string{"1.32.9", "1.38.0", "2.37.0", "nonsense", ""} {
		if m, ok := Lookup(v); ok {
			t.Errorf("Lookup(%q) = %+v, want none", v, m)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		"1.37\t1.37.2\tx",
		"1.37\t1.36.2\te\tc\tp\tv1beta4\tfallback\toptIn\tsupported",
		"1.37\t1.37.2\te\tc\tp\tv1beta4\tfallback\toptIn\tmaybe",
	} {
		if _, err := parse(bad); err == nil || !strings.Contains(err.Error(), "kubernetes.tsv:1") {
			t.Errorf("parse(%q) = %v, want a positioned error", bad, err)
		}
	}
}
