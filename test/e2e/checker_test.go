package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/checker"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// runChecker checks the lab as identifier on a device of family, asking
// base first.
func runChecker(t *testing.T, l *lab.Lab, identifier, family, base string) checker.Report {
	t.Helper()
	rep, err := checker.Check(ctx(t), checker.Options{
		Identifier: identifier, ModelFamily: family, DiscoveryBase: base,
		HTTPClient: checker.NewClient(l.CA.Pool()),
	})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

// requirePass requires a passing report whose only findings are the
// warning about the lab's short-lived certificate.
func requirePass(t *testing.T, rep checker.Report, version, method string) {
	t.Helper()
	if !rep.OK || len(rep.Fatal()) > 0 {
		t.Errorf("OK = %t", rep.OK)
	}
	for _, f := range rep.Findings {
		if f.Fatal || f.Step != checker.StepTLS || !strings.Contains(f.Problem, "expires on") {
			t.Errorf("finding: %s", f)
		}
	}
	if rep.Version != version || rep.Method != method {
		t.Errorf("version %q, method %q; want %q, %q", rep.Version, rep.Method, version, method)
	}
}

// The checker passes against the project's own deployment, as the library
// and as "caddy mdm-auth check" in the binary the lab runs.
func TestCheckerPassesAgainstTheLab(t *testing.T) {
	l := startLab(t)
	phone := runChecker(t, l, "alice@example.com", "iPhone", l.BaseURL)
	requirePass(t, phone, "mdm-byod", "apple-as-web")
	if !strings.HasPrefix(phone.BaseURL, l.BaseURL+"/mdmauth/enroll/byod") || len(phone.Redirects) != 0 || phone.ESSOURL != "" {
		t.Errorf("iPhone report %+v", phone)
	}
	mac := runChecker(t, l, "alice@example.com", "Mac", l.BaseURL)
	requirePass(t, mac, "mdm-adde", "apple-as-web")
	if !strings.HasPrefix(mac.BaseURL, l.BaseURL+"/mdmauth/enroll/adde") {
		t.Errorf("Mac BaseURL %q", mac.BaseURL)
	}

	// A refused domain is a failure, with the deployment's message.
	refused := runChecker(t, l, "mallory@elsewhere.net", "iPhone", l.BaseURL)
	if refused.OK || len(refused.Fatal()) != 1 || refused.Fatal()[0].Step != checker.StepDiscovery ||
		!strings.Contains(refused.Fatal()[0].Problem, "the deployment refuses mallory@elsewhere.net (403 com.apple.well-known.failed); the device shows") {
		t.Errorf("unknown domain: %+v", refused)
	}

	// The subcommand in the Caddy binary.
	bin, err := testenv.BuildCaddy()
	if err != nil {
		t.Fatalf("building caddy: %v", err)
	}
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, l.CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(identifier string) (string, int) {
		cmd := exec.CommandContext(ctx(t), bin, "mdm-auth", "check", identifier, "--discovery-base", l.BaseURL, "--ca", caPath)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("running %s: %v\n%s", bin, err, out)
		return "", -1
	}
	out, code := run("alice@example.com")
	if code != 0 || !strings.Contains(out, "challenge  apple-as-web") || !strings.Contains(out, "OK: a device gets through") || strings.Contains(out, "✗") {
		t.Errorf("caddy mdm-auth check alice@example.com: exit %d\n%s", code, out)
	}
	out, code = run("mallory@elsewhere.net")
	if code == 0 || !strings.Contains(out, "✗ discovery: the deployment refuses mallory@elsewhere.net") || !strings.Contains(out, "FAIL: a device would not enroll") {
		t.Errorf("caddy mdm-auth check mallory@elsewhere.net: exit %d\n%s", code, out)
	}
}

// Through the organization's website, whose mdm_discovery redirect carries
// the query (with '+' kept) to the gateway.
func TestCheckerThroughTheWebsiteRedirect(t *testing.T) {
	l, err := lab.Start(t, lab.Options{Website: "\tmdm_discovery {\n\t\tredirect {{.Gateway}}\n\t\tdomains example.com\n\t}\n\trespond \"the organization's website\""})
	if err != nil {
		t.Fatal(err)
	}
	rep := runChecker(t, l, "a+lice@example.com", "iPhone", l.WebsiteURL)
	requirePass(t, rep, "mdm-byod", "apple-as-web")
	want := l.BaseURL + "/.well-known/com.apple.remotemanagement?user-identifier=a+lice@example.com&model-family=iPhone"
	if len(rep.Redirects) != 1 || rep.Redirects[0] != want {
		t.Errorf("redirects %q, want [%q]", rep.Redirects, want)
	}
	if !strings.HasPrefix(rep.BaseURL, l.BaseURL+"/mdmauth/enroll/byod") {
		t.Errorf("BaseURL %q", rep.BaseURL)
	}
}

// With OAuth 2 sign-in the challenge is apple-oauth2.
func TestCheckerOAuth2(t *testing.T) {
	l := startOAuthLab(t, lab.Options{})
	for _, family := range []string{"iPhone", "iPad"} {
		requirePass(t, runChecker(t, l, "bob@example.com", family, l.BaseURL), "mdm-byod", "apple-oauth2")
	}
}

// With Enrollment SSO the checker fetches and validates the document for an
// iPhone, and a Mac is not offered it.
func TestCheckerEnrollmentSSO(t *testing.T) {
	sso, err := os.ReadFile("../../internal/esso/testdata/redirect.mobileconfig")
	if err != nil {
		t.Fatal(err)
	}
	ssoPath := filepath.Join(t.TempDir(), "sso.mobileconfig")
	if err := os.WriteFile(ssoPath, sso, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := lab.Start(t, lab.Options{Handler: "\t\tesso {\n\t\t\titunes_store_id 123456789\n\t\t\tconfiguration_profile " + ssoPath + "\n\t\t}\n"})
	if err != nil {
		t.Fatal(err)
	}
	phone := runChecker(t, l, "alice@example.com", "iPhone", l.BaseURL)
	requirePass(t, phone, "mdm-byod", "apple-as-web")
	if !strings.HasPrefix(phone.ESSOURL, "https://") {
		t.Errorf("iPhone: no Enrollment SSO document checked: %+v", phone)
	}
	mac := runChecker(t, l, "alice@example.com", "Mac", l.BaseURL)
	requirePass(t, mac, "mdm-adde", "apple-as-web")
	if mac.ESSOURL != "" {
		t.Errorf("Mac offered Enrollment SSO: %q", mac.ESSOURL)
	}
}
