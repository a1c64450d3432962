package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// examples/generic-oidc/Caddyfile, as shipped, runs a full enrollment in
// front of NanoMDM with a real provider.
func TestGenericOIDCExample(t *testing.T) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	site := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	l, err := lab.Start(t, lab.Options{ExtraRedirectURIs: []string{site + "/mdmauth/oidc/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../examples/generic-oidc/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	// The lab's template points at the lab's gateway: point a copy at this one.
	tmpl, err := os.ReadFile(l.TemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	tp := filepath.Join(t.TempDir(), "enroll.mobileconfig")
	if err := os.WriteFile(tp, []byte(strings.ReplaceAll(string(tmpl), l.BaseURL, site)), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[2])
	cd, err := testenv.StartCaddy(t, testenv.CaddyOptions{
		Caddyfile: string(src),
		Env: map[string]string{
			"MDMAUTH_SITE": site, "MDMAUTH_TLS": l.CertPath + " " + l.KeyPath,
			"MDMAUTH_ISSUER": l.OIDC.Issuer, "MDMAUTH_CLIENT_ID": l.OIDC.ClientID, "MDMAUTH_OIDC_SECRET": l.OIDC.ClientSecret,
			"MDMAUTH_DOMAINS": "example.com", "MDMAUTH_PROFILE": tp, "MDMAUTH_STORAGE_DIR": filepath.Join(t.TempDir(), "store"),
			"NANOMDM": l.NanoMDM.Addr, "MDMAUTH_ADMIN": admin,
			"MDMAUTH_HTTPS_PORT": fmt.Sprint(ports[0]), "MDMAUTH_HTTP_PORT": fmt.Sprint(ports[1]),
		},
		AdminAddr: admin,
		ReadyURL:  site + "/mdmauth/",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(cd.Logs(), 60))
		}
	})
	c := ctx(t)
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(c *device.Config) { c.DiscoveryBase = site })
	enrollAndCheckIn(t, c, d)
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
}
