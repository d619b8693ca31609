package spec

import "testing"

func TestMatchesSchema(t *testing.T) {
	cases := []struct {
		def, s string
		want   bool
	}{
		{"#DNSLabel", "h1", true},
		{"#DNSLabel", "H1", false},
		{"#DNSLabel", "-x", false},
		{"#DNSLabel", "a.b", false},
		{"#UserName", "root", true},
		{"#UserName", "ops-1", true},
		{"#UserName", "root;id", false},
		{"#K8sVersion", "1.37.2+k3s1", true},
		{"#K8sVersion", "v1.37.2", false},
		{"#SHA256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"#SHA256", "abc", false},
	}
	for _, c := range cases {
		got, err := MatchesSchema(c.def, c.s)
		if err != nil || got != c.want {
			t.Errorf("MatchesSchema(%s, %q) = %v, %v; want %v", c.def, c.s, got, err, c.want)
		}
	}
	if _, err := MatchesSchema("#NoSuch", "x"); err == nil {
		t.Error("an unknown definition is accepted")
	}
}
