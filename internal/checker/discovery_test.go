package checker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"net/http"
	"testing"
	"time"
)

func TestAnalyzeDiscovery(t *testing.T) {
	tests := []struct {
		name, body  string
		want        []string
		wantVersion string
		wantBase    string // "" when no entry is usable
	}{
		{"good", `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/e?model-family=iPhone"}]}`,
			nil, "mdm-byod", "https://mdm.example.com/e?model-family=iPhone"},
		{"adde", `{"Servers":[{"BaseURL":"https://mdm.example.com/e","Version":"mdm-adde"}]}`, nil, "mdm-adde", "https://mdm.example.com/e"},
		{"not JSON", `Servers: none`, []string{"✗ not a valid JSON object"}, "", ""},
		{"array", `[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/e"}]`, []string{"✗ not a valid JSON object"}, "", ""},
		{"duplicate key", `{"Servers":[],"Servers":[]}`, []string{`✗ the body is not a valid JSON object: duplicate JSON key "Servers"`}, "", ""},
		{"trailing data", `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/e"}]} {}`, []string{"✗ data after the JSON object"}, "", ""},
		{"every extra key", `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/e","Mode":"byod","Name":"x"}],"Extra":1}`,
			[]string{`✗ unexpected top-level key "Extra"`, `✗ unexpected key "Mode" in the server entry`, `✗ unexpected key "Name" in the server entry`},
			"mdm-byod", "https://mdm.example.com/e"},
		{"no Servers", `{"servers":[]}`, []string{`✗ unexpected top-level key "servers"`, `✗ the body has no "Servers"`}, "", ""},
		{"Servers not an array", `{"Servers":{"Version":"mdm-byod"}}`, []string{`✗ "Servers" is not a JSON array`}, "", ""},
		{"zero servers", `{"Servers":[]}`, []string{`✗ "Servers" is empty`}, "", ""},
		{"two servers", `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://a.example.com/e"},{"Version":"mdm-adde","BaseURL":"https://b.example.com/e"}]}`,
			[]string{`✗ "Servers" has 2 entries: devices need exactly one`}, "mdm-byod", "https://a.example.com/e"},
		{"problems in each of several", `{"Servers":[{"Version":"mdm-user","BaseURL":"https://a.example.com/e"},{"BaseURL":"/e"}]}`,
			[]string{`✗ "Servers" has 2 entries`, `✗ server entry 1 has Version "mdm-user"`, `✗ server entry 2 has no string "Version"`,
				`✗ server entry 2 has BaseURL "/e", which is not an absolute URL`}, "mdm-user", "https://a.example.com/e"},
		{"unknown Version", `{"Servers":[{"Version":"byod","BaseURL":"https://mdm.example.com/e"}]}`,
			[]string{`✗ the server entry has Version "byod": devices know only "mdm-byod" and "mdm-adde"`}, "byod", "https://mdm.example.com/e"},
		{"Version not a string", `{"Servers":[{"Version":1,"BaseURL":"https://mdm.example.com/e"}]}`,
			[]string{`✗ the server entry has no string "Version"`}, "", "https://mdm.example.com/e"},
		{"http BaseURL", `{"Servers":[{"Version":"mdm-byod","BaseURL":"http://mdm.example.com/e"}]}`,
			[]string{`✗ the server entry has BaseURL "http://mdm.example.com/e": devices only use https`}, "", ""},
		{"no BaseURL", `{"Servers":[{"Version":"mdm-byod"}]}`, []string{`✗ the server entry has no string "BaseURL"`}, "", ""},
		{"entry not an object", `{"Servers":["https://mdm.example.com/e"]}`, []string{"✗ the server entry is not a JSON object"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, entries := analyzeDiscovery([]byte(tc.body))
			matchAll(t, fs, tc.want)
			var version, base string
			for _, e := range entries {
				if e.url != nil {
					version, base = e.Version, e.BaseURL
					break
				}
			}
			if version != tc.wantVersion || base != tc.wantBase {
				t.Errorf("usable entry %q %q, want %q %q", version, base, tc.wantVersion, tc.wantBase)
			}
		})
	}
}

func TestHasDirective(t *testing.T) {
	tests := []struct {
		values []string
		want   bool
	}{
		{[]string{"no-store"}, true},
		{[]string{"private, No-Store"}, true},
		{[]string{"max-age=0", "no-store"}, true},
		{[]string{"no-cache"}, false},
		{[]string{"no-storehouse"}, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := hasDirective(tc.values, "no-store"); got != tc.want {
			t.Errorf("hasDirective(%q) = %t", tc.values, got)
		}
	}
}

func TestRawQueryFirst(t *testing.T) {
	q := "user-identifier=a+b@example.com&model-family=iPhone&user-identifier=x&model%2Dfamily=Mac&bad=%zz"
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"user-identifier", "a+b@example.com", true},
		{"model-family", "iPhone", true},
		{"bad", "%zz", true},
		{"missing", "", false},
	} {
		if got, ok := rawQueryFirst(q, tc.key); got != tc.want || ok != tc.ok {
			t.Errorf("%s = %q %t, want %q %t", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	if got := escapeQueryValue("a+b c@example.com", keepIdentifier); got != "a+b%20c@example.com" {
		t.Errorf("escape = %q", got)
	}
}

func TestCertificateProblems(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := func() *x509.Certificate {
		return &x509.Certificate{
			PublicKey: &ec.PublicKey, SignatureAlgorithm: x509.ECDSAWithSHA256,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			NotBefore:   now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(60 * 24 * time.Hour),
		}
	}
	weak := new(big.Int).Lsh(big.NewInt(1), 1023) // a 1024-bit modulus
	tests := []struct {
		name string
		edit func(c *x509.Certificate)
		want []string
	}{
		{"good", func(*x509.Certificate) {}, nil},
		{"old long-lived certificate", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC), now.Add(400*24*time.Hour)
		}, nil},
		{"weak RSA key", func(c *x509.Certificate) { c.PublicKey = &rsa.PublicKey{N: weak, E: 65537} },
			[]string{"✗ has a 1024-bit RSA key"}},
		{"SHA-1", func(c *x509.Certificate) { c.SignatureAlgorithm = x509.SHA1WithRSA }, []string{"✗ is signed with SHA1-RSA"}},
		{"no serverAuth", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} },
			[]string{"✗ has no extended key usage serverAuth"}},
		{"valid 900 days", func(c *x509.Certificate) { c.NotAfter = c.NotBefore.Add(900 * 24 * time.Hour) },
			[]string{"✗ is valid for 900 days: devices reject more than 825"}},
		{"valid 500 days", func(c *x509.Certificate) { c.NotAfter = c.NotBefore.Add(500 * 24 * time.Hour) },
			[]string{"is valid for 500 days: devices reject publicly trusted certificates valid for more than 398"}},
		{"expires soon", func(c *x509.Certificate) { c.NotAfter = now.Add(3*24*time.Hour + time.Hour) },
			[]string{"expires on 2026-03-04 (in 3 days)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			fs := certificateProblems("mdm.example.com", c, now)
			matchAll(t, fs, tc.want)
		})
	}
}

func TestFindingString(t *testing.T) {
	f := Finding{Step: StepDiscovery, Problem: "p", Fix: "f", Fatal: true}
	if got := f.String(); got != "✗ discovery: p → f" {
		t.Errorf("fatal = %q", got)
	}
	f.Fatal = false
	if got := f.String(); got != "! discovery: p → f" {
		t.Errorf("warning = %q", got)
	}
	if isRedirect(http.StatusOK) || !isRedirect(http.StatusPermanentRedirect) {
		t.Error("isRedirect")
	}
}
