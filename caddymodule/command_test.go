package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// caPEM writes the test server's certificate to a PEM file for --ca.
func caPEM(t *testing.T, srv *devicetest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCaddy runs "caddy <args>" through the registered mdm-auth command and
// returns the output and the error RunE returned.
func runCaddy(t *testing.T, args ...string) (string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["mdm-auth"]
	if !ok || reg.CobraFunc == nil || reg.Short == "" {
		t.Fatalf("mdm-auth is not registered: %+v", reg)
	}
	root := &cobra.Command{Use: "caddy", SilenceUsage: true, SilenceErrors: true}
	cmd := &cobra.Command{Use: reg.Name + " " + reg.Usage, Short: reg.Short, Long: reg.Long}
	reg.CobraFunc(cmd)
	root.AddCommand(cmd)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCheckCommand(t *testing.T) {
	good := devicetest.New(devicetest.Options{})
	defer good.Close()
	broken := devicetest.New(devicetest.Options{Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
		if stage != devicetest.StageEnroll {
			return false
		}
		w.Header().Add("WWW-Authenticate", `bearer method="apple-as-web", url="https://mdm.example.com/s"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="mdm"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}})
	defer broken.Close()

	t.Run("conforming deployment", func(t *testing.T) {
		out, err := runCaddy(t, "mdm-auth", "check", "alice@example.com", "--discovery-base", good.URL, "--ca", caPEM(t, good))
		if err != nil {
			t.Fatalf("err = %v\n%s", err, out)
		}
		for _, want := range []string{"version    mdm-byod", "base URL   " + good.BaseURL(), "challenge  apple-as-web",
			"OK: a device gets through discovery and the first enrollment request"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("broken deployment", func(t *testing.T) {
		out, err := runCaddy(t, "mdm-auth", "check", "alice@example.com", "--model-family", "iPad", "--discovery-base", broken.URL, "--ca", caPEM(t, broken))
		if err == nil || !strings.Contains(err.Error(), "a device would not enroll as alice@example.com: 2 problem(s)") {
			t.Fatalf("err = %v\n%s", err, out)
		}
		for _, want := range []string{
			"✗ challenge: the 401 has 2 WWW-Authenticate headers",
			`✗ challenge: auth scheme "bearer": devices compare "Bearer" case-sensitively → write the scheme exactly "Bearer"`,
			"FAIL: a device would not enroll: 2 problems",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		out, err := runCaddy(t, "mdm-auth", "check", "alice@example.com", "--json", "--discovery-base", broken.URL, "--ca", caPEM(t, broken))
		if err == nil {
			t.Fatal("no error for a broken deployment")
		}
		var rep struct {
			OK       bool
			Version  string
			Findings []struct {
				Step, Problem, Fix string
				Fatal              bool
			}
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if rep.OK || rep.Version != "mdm-byod" || len(rep.Findings) != 2 || rep.Findings[0].Step != "challenge" || !rep.Findings[0].Fatal || rep.Findings[0].Fix == "" {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("untrusted without --ca", func(t *testing.T) {
		out, err := runCaddy(t, "mdm-auth", "check", "alice@example.com", "--discovery-base", good.URL)
		if err == nil || !strings.Contains(out, "✗ tls: the certificate of "+good.Listener.Addr().String()+" is not trusted") {
			t.Fatalf("err = %v\n%s", err, out)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"mdm-auth", "check"},
			{"mdm-auth", "check", "alice@example.com", "bob@example.com"},
			{"mdm-auth", "check", "alice"},
			{"mdm-auth", "check", "alice@example.com", "--model-family", "Toaster"},
			{"mdm-auth", "check", "alice@example.com", "--ca", filepath.Join(t.TempDir(), "missing.pem")},
			{"mdm-auth", "check", "alice@example.com", "--discovery-base", "http://127.0.0.1:1"},
		} {
			if out, err := runCaddy(t, args...); err == nil {
				t.Errorf("%q: no error\n%s", args, out)
			}
		}
		notPEM := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := runCaddy(t, "mdm-auth", "check", "alice@example.com", "--ca", notPEM); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("--ca without a certificate: %v", err)
		}
	})
}

// runCheck returns the exit status Caddy exits with.
func TestRunCheckExitStatus(t *testing.T) {
	good := devicetest.New(devicetest.Options{OAuth2: true})
	defer good.Close()
	broken := devicetest.New(devicetest.Options{Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
		if stage != devicetest.StageDiscovery {
			return false
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(`{"Servers":[{"Version":"mdm-byod","BaseURL":"` + "https://" + r.Host + devicetest.EnrollPath + `"}]}`))
		return true
	}})
	defer broken.Close()
	run := func(srv *devicetest.Server) (int, string, error) {
		cmd := newCheckCommand()
		if err := cmd.ParseFlags([]string{"bob@example.com", "--discovery-base", srv.URL, "--ca", caPEM(t, srv)}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		code, err := runCheck(context.Background(), &out, caddycmd.Flags{FlagSet: cmd.Flags()})
		return code, out.String(), err
	}
	if code, out, err := run(good); code != 0 || err != nil || !strings.Contains(out, "challenge  apple-oauth2") {
		t.Errorf("good: %d %v\n%s", code, err, out)
	}
	code, out, err := run(broken)
	if code != 1 || err == nil || !strings.Contains(out, `✗ discovery: Content-Type "text/plain": devices require application/json → send Content-Type: application/json`) {
		t.Errorf("broken: %d %v\n%s", code, err, out)
	}
	if !strings.Contains(out, "! discovery: the answer has no Cache-Control: no-store") || !strings.Contains(out, "FAIL: a device would not enroll: 1 problem, 1 warning") {
		t.Errorf("warning or verdict missing:\n%s", out)
	}
}
