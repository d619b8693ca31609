package hostprep_test

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// A bundle's haproxy (the node-local API server proxy) is installed only
// where the plan names it; its libraries come with the rest of the bundle.
func TestBundleOnDemandPackages(t *testing.T) {
	var files []steptest.File
	for _, p := range []struct{ name, version string }{{"conntrack", "1:1.4.7-1+b2"}, {"haproxy", "2.6.12-1+deb12u4"}, {"liblua5.3-0", "5.3.6-2"}} {
		files = append(files, steptest.File{
			File:    bundle.File{Path: "debs/" + p.name + ".deb", Kind: bundle.KindDeb, Package: p.name, Version: p.version},
			Content: []byte("fake package " + p.name + "\n"),
		})
	}
	b := steptest.WriteBundle(t, nil, files...)
	for _, tc := range []struct {
		names []string
		want  []string // packages passed to dpkg -i
	}{
		{[]string{"conntrack"}, []string{"conntrack", "liblua5.3-0"}},
		{[]string{"conntrack", "haproxy"}, []string{"conntrack", "haproxy", "liblua5.3-0"}},
	} {
		t.Run(strings.Join(tc.names, "+"), func(t *testing.T) {
			h := newHost(t, "debian")
			op := hostprep.Packages{Names: tc.names, Source: "bundle"}
			if err := op.Apply(context.Background(), step.Target{Host: h, Facts: &facts.Facts{PackageManager: "apt"}, Bundle: b}); err != nil {
				t.Fatal(err)
			}
			var dpkg string
			for _, l := range strings.Split(h.Transcript(), "\n") {
				if strings.Contains(l, "dpkg -i --") {
					dpkg = l
				}
			}
			var got []string
			for _, f := range strings.Fields(dpkg) {
				if strings.HasSuffix(f, ".deb") {
					base := f[strings.LastIndex(f, "/")+1:]
					got = append(got, strings.TrimSuffix(base[strings.Index(base, "-")+1:], ".deb")) // staged as DIGEST-NAME
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("dpkg -i installs %v, want %v\n%s", got, tc.want, h.Transcript())
			}
		})
	}
}
