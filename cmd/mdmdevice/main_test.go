package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// files writes the CA and the server's TLS root as PEM files.
func files(t *testing.T, srv *devicetest.Server) (caCert, caKey, roots string) {
	t.Helper()
	ca, err := device.NewCA("cli test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey, roots = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), filepath.Join(dir, "roots.pem")
	write(t, caCert, "CERTIFICATE", ca.Cert.Raw)
	write(t, caKey, "PRIVATE KEY", keyDER)
	write(t, roots, "CERTIFICATE", srv.Certificate().Raw)
	return caCert, caKey, roots
}

func write(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollCommand(t *testing.T) {
	for _, family := range []string{"iPhone", "Mac"} {
		t.Run(family, func(t *testing.T) {
			opts := devicetest.Options{Users: map[string]string{"alice": "p@ss w0rd"}}
			if family == "Mac" {
				opts.Version, opts.MacDevice = "mdm-adde", true
			}
			srv := devicetest.New(opts)
			defer srv.Close()
			caCert, caKey, roots := files(t, srv)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"enroll",
				"-discovery", srv.URL, "-user", "alice@example.com", "-username", "alice", "-password", "p@ss w0rd",
				"-family", family, "-ca-cert", caCert, "-ca-key", caKey, "-roots", roots,
			}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
			}
			out := stdout.String()
			for _, want := range []string{"[discovery]", "[challenge] 401 Bearer method=apple-as-web", "[profile]", "enrolled: mode",
				"[check-in] Authenticate", "[check-in] TokenUpdate", "[command] Status Idle", "device channel: no command queued", "done"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if family == "Mac" && !strings.Contains(out, "user channel: no command queued") {
				t.Errorf("Mac output lacks the user channel poll:\n%s", out)
			}
			if strings.Contains(out, "p@ss w0rd") {
				t.Error("output contains the password")
			}
			kinds := []string{}
			for _, r := range srv.MDMRequests() {
				if r.Status != http.StatusOK {
					t.Errorf("%s answered %d", r.Kind, r.Status)
				}
				kinds = append(kinds, r.Kind)
			}
			if len(kinds) < 3 {
				t.Errorf("MDM requests %q", kinds)
			}
		})
	}
}

func TestEnrollCommandReportsDeviation(t *testing.T) {
	srv := devicetest.New(devicetest.Options{EditProfile: func(_, mdm map[string]any) { mdm["AccessRights"] = 8191 }})
	defer srv.Close()
	caCert, caKey, roots := files(t, srv)
	t.Setenv("MDMDEVICE_PASSWORD", "secret")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"enroll", "-discovery", srv.URL, "-user", "alice@example.com",
		"-username", "alice", "-ca-cert", caCert, "-ca-key", caKey, "-roots", roots}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "AccessRights, which must be absent when EnrollmentMode is BYOD") {
		t.Fatalf("exit %d, stderr %q", code, &stderr)
	}
}

func TestDiscoverCommand(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	_, _, roots := files(t, srv)
	var stdout bytes.Buffer
	code := run(context.Background(), []string{"discover", "-discovery", srv.URL, "-user", "bob@example.com", "-roots", roots}, &stdout, io.Discard)
	if code != 0 || !strings.Contains(stdout.String(), "Version: mdm-byod\nBaseURL: "+srv.BaseURL()) {
		t.Fatalf("exit %d, output %q", code, &stdout)
	}
	if q := srv.Discoveries(); len(q) != 1 || q[0] != "user-identifier=bob@example.com&model-family=iPhone" {
		t.Errorf("discovery queries %q", q)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"help"}, 0},
		{[]string{"enroll", "-h"}, 0},
		{[]string{"enroll", "-discovery", "https://example.com"}, 2},
		{[]string{"discover", "-user", "a@example.com"}, 2},
		{[]string{"discover", "-nope"}, 2},
		{[]string{"discover", "-discovery", "https://example.com", "-user", "a@b@example.com"}, 1},
	}
	for _, tc := range tests {
		if code := run(context.Background(), tc.args, io.Discard, io.Discard); code != tc.code {
			t.Errorf("run(%q) = %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestParseKey(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	p8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	for name, b := range map[string][]byte{
		"pkcs1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"sec1 after params": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...),
		"pkcs8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	} {
		if k, err := parseKey(b); err != nil || k == nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := parseKey([]byte("nothing")); err == nil {
		t.Error("parsed a key from garbage")
	}
}
