package testenv

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The harness is tested with Caddy's own command at the version in go.mod, so that it does not
// depend on the state of this repository's plugin.
const (
	stockCaddyName    = "caddy-stock"
	stockCaddyPackage = "github.com/caddyserver/caddy/v2/cmd/caddy"
	stockCaddyVersion = "v2.11.9"
)

// plainCaddyfile serves body over TLS on httpsPort with the given certificate.
func plainCaddyfile(adminPort, httpPort, httpsPort int, certPath, keyPath, body string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	http_port %[2]d
	https_port %[3]d
	persist_config off
	skip_install_trust
}

https://127.0.0.1:%[3]d {
	tls %[4]q %[5]q
	respond %[6]q
}
`, adminPort, httpPort, httpsPort, certPath, keyPath, body)
}

func TestCaddyLifecycle(t *testing.T) {
	t.Parallel()
	bin, err := Binary(stockCaddyName, stockCaddyPackage, stockCaddyVersion)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA("caddy test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WritePEM(t.TempDir(), "server")
	if err != nil {
		t.Fatal(err)
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	site := fmt.Sprintf("https://127.0.0.1:%d/", ports[2])
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])

	c, err := StartCaddy(t, CaddyOptions{
		Caddyfile: plainCaddyfile(ports[0], ports[1], ports[2], certPath, keyPath, "ok {$GREETING}"),
		Env:       map[string]string{"GREETING": "hello"},
		AdminAddr: admin,
		ReadyURL:  site,
		Binary:    bin,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true},
	}
	get := func() (string, error) {
		resp, err := client.Get(site)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	expect := func(step, want string) {
		t.Helper()
		got, err := get()
		if err != nil || got != want {
			t.Fatalf("%s: GET = %q, %v; want %q", step, got, err, want)
		}
	}

	expect("start", "ok hello")
	if filepath.Dir(c.CaddyfilePath) != c.Dir {
		t.Errorf("Caddyfile %s outside %s", c.CaddyfilePath, c.Dir)
	}

	// A client that does not trust the test CA is refused.
	if _, err := http.Get(site); err == nil {
		t.Error("TLS accepted without trusting the test CA")
	}

	if err := c.Reload(plainCaddyfile(ports[0], ports[1], ports[2], certPath, keyPath, "reloaded {$GREETING}")); err != nil {
		t.Fatal(err)
	}
	expect("reload", "reloaded hello")

	if err := c.Reload("this is { not a Caddyfile"); err == nil {
		t.Error("Reload accepted a broken Caddyfile")
	}
	expect("refused reload", "reloaded hello")

	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := get(); err == nil {
		t.Fatal("answer after Kill")
	}
	// The broken Caddyfile is still on disk: start with a good one.
	if err := c.Reload(""); err == nil {
		t.Error("Reload with Caddy down succeeded")
	}
	if err := writeFile(c.CaddyfilePath, plainCaddyfile(ports[0], ports[1], ports[2], certPath, keyPath, "again")); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	expect("start after kill", "again")

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	expect("restart", "again")

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Fatal("running after Stop")
	}
	if strings.Count(c.Logs(), "=== testenv: starting caddy") != 3 {
		t.Errorf("expected three runs in the log:\n%s", c.Logs())
	}
}

func TestCaddyReadyOnAdmin(t *testing.T) {
	t.Parallel()
	bin, err := Binary(stockCaddyName, stockCaddyPackage, stockCaddyVersion)
	if err != nil {
		t.Fatal(err)
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	caddyfile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\thttp_port %d\n\thttps_port %d\n}\nhttp://127.0.0.1:%d {\n\trespond \"plain\"\n}\n",
		ports[0], ports[1], ports[2], ports[1])
	c, err := StartCaddy(t, CaddyOptions{Caddyfile: caddyfile, AdminAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "plain" {
		t.Errorf("body %q", b)
	}
	if err := c.WaitLog("serving initial configuration", 10*time.Second); err != nil {
		t.Error(err)
	}
}

func TestCaddyStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	bin, err := Binary(stockCaddyName, stockCaddyPackage, stockCaddyVersion)
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartCaddy(t, CaddyOptions{
		Caddyfile: "{\n\tadmin 127.0.0.1:" + fmt.Sprint(port) + "\n}\n:1 {\n\tno_such_directive\n}\n",
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", port),
		Binary:    bin,
	})
	if err == nil || !strings.Contains(err.Error(), "no_such_directive") {
		t.Fatalf("err = %v, want the log line naming the bad directive", err)
	}
}

// TestBuildCaddy builds this repository's Caddy (cmd/caddy) and runs it.
func TestBuildCaddy(t *testing.T) {
	t.Parallel()
	bin, err := BuildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), stockCaddyVersion) {
		t.Errorf("caddy version = %q, want %s", out, stockCaddyVersion)
	}
}
