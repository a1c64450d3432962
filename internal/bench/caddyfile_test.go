package bench

import (
	"strings"
	"testing"
)

// TestCaddyfileConfigs: A has no mdm_auth, B keeps its store in a
// directory, C in PostgreSQL with the DSN from the environment variable
// the harness sets; the site is the same.
func TestCaddyfileConfigs(t *testing.T) {
	base := caddyfileData{Admin: 2019, HTTP: 8080, HTTPS: 8443, Storage: "/srv/store", Cert: "c.pem", Key: "k.pem",
		Issuer: "https://idp.example", ClientID: "bench", Template: "t.mobileconfig", Upstream: "127.0.0.1:9000", TTL: "90d"}
	render := func(gateway, pg bool) string {
		t.Helper()
		d := base
		d.Gateway, d.Postgres = gateway, pg
		s, err := renderCaddyfile(d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, c := render(false, false), render(true, false), render(true, true)
	if strings.Contains(a, "mdm_auth") || strings.Contains(a, "storage") {
		t.Errorf("A has mdm_auth:\n%s", a)
	}
	if !strings.Contains(b, "storage_dir /srv/store") || strings.Contains(b, "postgres") {
		t.Errorf("B does not use the Badger store in /srv/store:\n%s", b)
	}
	dsn := "storage postgres {\n\t\t\tdsn {env." + PostgresDSNEnv + "}\n\t\t}"
	if !strings.Contains(c, dsn) || strings.Contains(c, "storage_dir") {
		t.Errorf("C does not take its DSN from %s:\n%s", PostgresDSNEnv, c)
	}
	site := func(s string) string { return s[strings.Index(s, "https://127.0.0.1:"):] }
	if site(b) != site(c) {
		t.Errorf("B and C differ beyond the store:\n%s\n---\n%s", site(b), site(c))
	}
}
