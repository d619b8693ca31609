package kube_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var _ = flag.Bool("update", false, "rewrite golden files")

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// bundleFiles are the fake artifacts of testBundle: path -> image name
// ("" for binaries).
var bundleFiles = map[string]string{
	"bin/kubelet":                        "",
	"bin/kubeadm":                        "",
	"bin/kubectl":                        "",
	"bin/flannel-cni":                    "",
	"images/kube-apiserver.tar":          "registry.local/k8s/kube-apiserver:v1.34.10",
	"images/etcd.tar":                    "registry.local/k8s/etcd:3.6.5-0",
	"images/kube-proxy.tar":              "registry.local/k8s/kube-proxy:v1.34.10",
	"images/pause.tar":                   "registry.local/k8s/pause:3.10.1",
	"images/flannel.tar":                 "registry.local/clusterctl/flannel:v0.28.10",
	"images/kube-scheduler.tar":          "registry.local/k8s/kube-scheduler:v1.34.10",
	"images/coredns.tar":                 "registry.local/k8s/coredns:v1.12.1",
	"images/kube-controller-manager.tar": "registry.local/k8s/kube-controller-manager:v1.34.10",
}

// testBundle is a bundle of small fake artifacts; skip leaves paths out.
func testBundle(t *testing.T, skip ...string) *bundle.Bundle {
	t.Helper()
	var files []steptest.File
	for _, rel := range facts.Sorted(bundleFiles) {
		img := bundleFiles[rel]
		if contains(skip, rel) {
			continue
		}
		f := steptest.File{File: bundle.File{Path: rel, Kind: bundle.KindBinary}, Content: []byte("fake " + rel + "\n")}
		if img != "" {
			f.Kind, f.Image, f.Content = bundle.KindImage, img, ociArchive(t, img)
		}
		files = append(files, f)
	}
	return steptest.WriteBundle(t, map[string]string{"kubernetes": "1.34.10"}, files...)
}

// imageDigest is the manifest digest of testBundle's archive of img.
func imageDigest(img string) string { return "sha256:" + sum([]byte(img)) }

// ociArchive is a minimal OCI archive: what Images reads of it, index.json
// naming img with imageDigest(img), behind a blob as mkimage writes them.
func ociArchive(t *testing.T, img string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":401,"annotations":{"io.containerd.image.name":%q}}]}`, imageDigest(img), img)
	for _, f := range []struct{ name, body string }{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"index.json", index}, {"blobs/sha256/layer", "layer of " + img}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return b.Bytes()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var statRE = regexp.MustCompile(`if \[ -f (\S+) \]; then sha256sum < `)

// newNode is a strict fake host that answers the file inspections steps
// make (StatFile, sha256sum of uploads and binaries) from its in-memory
// filesystem, so a second Apply on the same fake sees the first's work.
func newNode(t *testing.T, name string) *hosttest.Fake {
	f := hosttest.NewFake(t, name)
	f.ExpectFunc("stat FILE", func(l string) bool { return statRE.MatchString(l) }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			p := statRE.FindStringSubmatch(cmd.Line)[1]
			file, ok := f.File(p)
			if !ok {
				fmt.Fprintln(cmd.Stdout, "missing")
				return nil
			}
			owner, group := file.Owner, file.Group
			if owner == "" { // set by SetFile: as a package installs it
				owner, group = "root", "root"
			}
			fmt.Fprintf(cmd.Stdout, "%s  -\n%o %s %s\n", sum(file.Content), host.UnixMode(file.Mode), owner, group)
			return nil
		}).AnyTimes()
	f.ExpectFunc("sha256sum -- FILES", func(l string) bool { return strings.Contains(l, "sha256sum -- ") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			_, rest, _ := strings.Cut(cmd.Line, "sha256sum -- ")
			for _, p := range strings.Fields(rest) {
				if file, ok := f.File(p); ok {
					fmt.Fprintf(cmd.Stdout, "%s  %s\n", sum(file.Content), p)
				}
			}
			return nil
		}).AnyTimes()
	return f
}

// freshFacts are a prepared Debian host without Kubernetes.
func freshFacts(name string) *facts.Facts {
	return &facts.Facts{
		Host: name, OSID: "debian", OSFamily: "debian", Init: "systemd", CgroupV: 1, PackageManager: "apt",
		Containerd: "1.6.20~ds1", ContainerdActive: true,
		Files:    map[string]string{},
		Services: map[string]string{"containerd": "enabled/active"},
	}
}
