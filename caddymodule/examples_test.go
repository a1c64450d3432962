package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Every Caddyfile under examples/ adapts and provisions as shipped (with
// its environment placeholders set).
func TestExamplesProvision(t *testing.T) {
	files, err := filepath.Glob("../examples/*/Caddyfile")
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	profile, err := os.ReadFile("../examples/enroll.mobileconfig")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			dir := t.TempDir()
			pp := filepath.Join(dir, "enroll.mobileconfig")
			if err := os.WriteFile(pp, profile, 0o600); err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{
				"MDMAUTH_PROFILE": pp, "MDMAUTH_STORAGE_DIR": filepath.Join(dir, "store"),
				"MDMAUTH_SITE": "mdm.example.com", "MDMAUTH_TLS": "internal", "MDMAUTH_ISSUER": "https://idp.example.com/",
				"MDMAUTH_CLIENT_ID": "mdmauth", "MDMAUTH_DOMAINS": "example.com", "MDMAUTH_ADMIN": "localhost:0",
				"MDMAUTH_OKTA_CLIENT_ID": "okta-client", "MDMAUTH_ENTRA_CLIENT_ID": "entra-client",
				"MDMAUTH_GOOGLE_CLIENT_ID": "google-client",
			} {
				t.Setenv(k, v)
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": f})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("adapt warning: %s", w.Message)
			}
			var cfg caddy.Config
			if err := caddy.StrictUnmarshalJSON(cfgJSON, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("provision: %v", err)
			}
		})
	}
}
