package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	// The standard modules the test configs use (http, tls, reverse_proxy, …).
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestMain points HOME and the XDG directories at a scratch directory, so
// that neither caddy.Validate nor the in-process Caddy of the integration
// test reads or writes the real home (Caddy's data and config directories,
// the autosaved config, the default mdm_auth store).
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := os.MkdirTemp("", "caddymodule-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	for name, dir := range map[string]string{
		"HOME":            filepath.Join(root, "home"),
		"XDG_DATA_HOME":   filepath.Join(root, "data"),
		"XDG_CONFIG_HOME": filepath.Join(root, "config"),
		"XDG_CACHE_HOME":  filepath.Join(root, "cache"),
	} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Setenv(name, dir)
	}
	// Caddy computes its default storage when the package is initialized,
	// before the environment above was set.
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	return m.Run()
}
