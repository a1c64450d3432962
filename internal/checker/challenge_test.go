package checker

import (
	"strings"
	"testing"
)

const (
	webChallenge   = `Bearer method="apple-as-web", url="https://mdm.example.com/mdmauth/sign-in/FLOW"`
	oauthChallenge = `Bearer method="apple-oauth2", authorization-url="https://idp.example.com/authorize?tenant=1", token-url="https://idp.example.com/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="abc", scope="openid mdm"`
)

// problems returns the findings' problems, fatal ones prefixed "✗ ".
func problems(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		p := f.Problem
		if f.Fatal {
			p = "✗ " + p
		}
		out[i] = p
	}
	return out
}

// matchAll requires one finding per want, in order, each containing its
// substring ("✗ " marks a fatal one), and no other finding.
func matchAll(t *testing.T, fs []Finding, want []string) {
	t.Helper()
	got := problems(fs)
	if len(got) != len(want) {
		t.Fatalf("findings:\n  %s\nwant %d:\n  %s", strings.Join(got, "\n  "), len(want), strings.Join(want, "\n  "))
	}
	for i, w := range want {
		fatal := strings.HasPrefix(w, "✗ ")
		if !strings.Contains(got[i], strings.TrimPrefix(w, "✗ ")) || fs[i].Fatal != fatal {
			t.Errorf("finding %d = %q, want %q", i, got[i], w)
		}
		if fs[i].Fix == "" || fs[i].Step == "" {
			t.Errorf("finding %d has no fix or step: %+v", i, fs[i])
		}
	}
}

func TestAnalyzeChallenge(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
	}{
		{"web", webChallenge, nil},
		{"oauth2", oauthChallenge, nil},
		{"oauth2 without scope", strings.TrimSuffix(oauthChallenge, `, scope="openid mdm"`), nil},
		{"lower-case scheme", `bearer method="apple-as-web", url="https://x.example/"`,
			[]string{`✗ auth scheme "bearer": devices compare "Bearer" case-sensitively`}},
		{"upper-case scheme", `BEARER method="apple-as-web", url="https://x.example/"`, []string{`✗ auth scheme "BEARER"`}},
		{"other scheme", `Basic realm="mdm"`, []string{`✗ auth scheme "Basic"`, `✗ unknown parameter "realm"`, "✗ no method"}},
		{"no scheme", `method="apple-as-web", url="https://x.example/"`, []string{"✗ no auth scheme"}},
		{"unquoted values", `Bearer method=apple-as-web, url=https://x.example/`,
			[]string{"✗ value of method is not quoted", "✗ value of url is not quoted"}},
		{"no space after comma", `Bearer method="apple-as-web",url="https://x.example/"`,
			[]string{`✗ parameters separated by "," instead of ", "`}},
		{"semicolons, reported once", `Bearer method="apple-oauth2"; authorization-url="https://x.example/a"; token-url="https://x.example/t"; redirect-url="apple-remotemanagement-user-login:/r"; client-id="c"`,
			[]string{`✗ parameters separated by "; "`}},
		{"trailing separator", webChallenge + ", ", []string{`✗ ", " after the last parameter`}},
		{"escape", `Bearer method="apple-as-web", url="https://x.example/\"q"`, []string{"✗ value of url contains a backslash escape"}},
		{"no closing quote", `Bearer method="apple-as-web", url="https://x.example/`,
			[]string{"✗ value of url has no closing quote", "✗ apple-as-web challenge without url"}},
		{"upper-case name", `Bearer method="apple-as-web", URL="https://x.example/"`,
			[]string{`✗ parameter name "URL" is not lower-case`, "✗ apple-as-web challenge without url"}},
		{"duplicate", webChallenge + `, url="https://y.example/"`, []string{"✗ parameter url appears twice"}},
		{"second challenge", webChallenge + `, Basic realm="x"`, []string{`✗ a second challenge ("Basic realm=\"x\"")`}},
		{"unknown parameter", webChallenge + `, realm="mdm"`, []string{`✗ unknown parameter "realm"`}},
		{"no method", `Bearer url="https://x.example/"`, []string{"✗ the challenge has no method"}},
		{"unknown method", `Bearer method="apple-web", url="https://x.example/"`, []string{`✗ unknown method "apple-web"`}},
		{"apple-maid", `Bearer method="apple-maid"`, []string{`✗ method "apple-maid" is undocumented`}},
		{"web without url", `Bearer method="apple-as-web"`, []string{"✗ apple-as-web challenge without url"}},
		{"web with http url", `Bearer method="apple-as-web", url="http://x.example/"`, []string{`✗ url "http://x.example/" is not https`}},
		{"web with relative url", `Bearer method="apple-as-web", url="/sign-in"`, []string{`✗ url "/sign-in" is not an absolute URL`}},
		{"web url with a query", `Bearer method="apple-as-web", url="https://x.example/s?flow=1"`, []string{"url \"https://x.example/s?flow=1\" has a query"}},
		{"oauth2 missing everything", `Bearer method="apple-oauth2"`, []string{
			"✗ apple-oauth2 challenge without authorization-url", "✗ apple-oauth2 challenge without token-url",
			"✗ apple-oauth2 challenge without client-id", "✗ apple-oauth2 challenge without redirect-url"}},
		{"oauth2 missing redirect-url", strings.Replace(oauthChallenge, `redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", `, "", 1),
			[]string{"✗ apple-oauth2 challenge without redirect-url"}},
		{"oauth2 redirect-uri", strings.Replace(oauthChallenge, "redirect-url=", "redirect-uri=", 1),
			[]string{"✗ parameter redirect-uri: devices read redirect-url"}},
		{"oauth2 https redirect-url", strings.Replace(oauthChallenge, "apple-remotemanagement-user-login:/oauth2/redirection", "https://mdm.example.com/cb", 1),
			[]string{`✗ redirect-url "https://mdm.example.com/cb" does not use the apple-remotemanagement-user-login: scheme`}},
		{"oauth2 http token-url", strings.Replace(oauthChallenge, "https://idp.example.com/token", "http://idp.example.com/token", 1),
			[]string{`✗ token-url "http://idp.example.com/token" is not https`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := analyzeChallenge(tc.value)
			matchAll(t, fs, tc.want)
			for _, f := range fs {
				if f.Step != StepChallenge {
					t.Errorf("step %q", f.Step)
				}
			}
		})
	}
}

func TestAnalyzeChallengeParams(t *testing.T) {
	_, p := analyzeChallenge(oauthChallenge)
	want := map[string]string{
		"method": "apple-oauth2", "authorization-url": "https://idp.example.com/authorize?tenant=1",
		"token-url": "https://idp.example.com/token", "redirect-url": "apple-remotemanagement-user-login:/oauth2/redirection",
		"client-id": "abc", "scope": "openid mdm",
	}
	if len(p) != len(want) {
		t.Fatalf("params %v", p)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %q, want %q", k, p[k], v)
		}
	}
}
