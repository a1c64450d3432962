package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvVar(t *testing.T) {
	for name, want := range map[string]string{
		"nanomdm":             "NANOMDM_BIN",
		"oidc-example-server": "OIDC_EXAMPLE_SERVER_BIN",
		"caddy":               "CADDY_BIN",
	} {
		if got := EnvVar(name); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestInstallName(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/micromdm/nanomdm/cmd/nanomdm":   "nanomdm",
		"github.com/zitadel/oidc/v3/example/server": "server",
		"github.com/caddyserver/caddy/v2/cmd/caddy": "caddy",
		"example.com/tool/v2":                       "tool",
	} {
		if got := installName(pkg); got != want {
			t.Errorf("installName(%q) = %q, want %q", pkg, got, want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if !isModuleRoot(root) {
		t.Fatalf("%s is not the module root", root)
	}
	wd, _ := os.Getwd()
	if rel, err := filepath.Rel(root, wd); err != nil || rel != filepath.Join("internal", "testenv") {
		t.Errorf("root %s is not two levels above %s", root, wd)
	}
}

func TestBinaryEnvOverride(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-nanomdm")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value, want, wantErr string
	}{
		{"executable", exe, exe, ""},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
		{"not executable", plain, "", "not an executable"},
		{"directory", dir, "", "not an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NANOMDM_BIN", tc.value)
			got, err := NanoMDMBinary()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NanoMDMBinary() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestBinaryInstallsPinnedVersions(t *testing.T) {
	for _, tc := range []struct{ name, pkg, version string }{
		{NanoMDMName, NanoMDMPackage, NanoMDMVersion},
		{OIDCServerName, OIDCServerPackage, OIDCServerVersion},
	} {
		p, err := Binary(tc.name, tc.pkg, tc.version)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(p) != tc.name {
			t.Errorf("installed as %s, want %s", p, tc.name)
		}
		if !isBuildOf(p, tc.pkg, tc.version) {
			t.Errorf("%s is not %s@%s", p, tc.pkg, tc.version)
		}
	}
}

func TestBuildPackage(t *testing.T) {
	p, err := BuildPackage("testenv-hello", "./internal/testenv/testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(p)
		os.Remove(filepath.Join(filepath.Dir(p), ".testenv-hello.lock"))
	})
	out, err := exec.Command(p).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "hello from testenv" {
		t.Errorf("output = %q", out)
	}
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != dir {
		t.Errorf("built into %s, want %s", p, dir)
	}
}
