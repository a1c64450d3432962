package apple

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestRenderChallenge(t *testing.T) {
	tests := []struct {
		name   string
		method string
		params []Param
		want   string
	}{
		{
			name:   "web",
			method: "apple-as-web",
			params: []Param{{"url", "https://mdm.example.com/mdmauth/sign-in/FLOW"}},
			want:   `Bearer method="apple-as-web", url="https://mdm.example.com/mdmauth/sign-in/FLOW"`,
		},
		{
			name:   "oauth2",
			method: "apple-oauth2",
			params: []Param{
				{"authorization-url", "https://idp.example.com/authorize"},
				{"token-url", "https://idp.example.com/token"},
				{"redirect-url", "apple-remotemanagement-user-login:/oauth2/redirection"},
				{"client-id", "mdm-client"},
				{"scope", "openid email"},
			},
			want: `Bearer method="apple-oauth2", authorization-url="https://idp.example.com/authorize", token-url="https://idp.example.com/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="mdm-client", scope="openid email"`,
		},
		{name: "method only", method: "apple-as-web", want: `Bearer method="apple-as-web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderChallenge(tt.method, tt.params...)
			if err != nil {
				t.Fatalf("RenderChallenge: %v", err)
			}
			if got != tt.want {
				t.Errorf("RenderChallenge =\n %s\nwant\n %s", got, tt.want)
			}
			method, params, err := ParseChallenge(got)
			if err != nil {
				t.Fatalf("ParseChallenge: %v", err)
			}
			if method != tt.method || !reflect.DeepEqual(params, tt.params) {
				t.Errorf("ParseChallenge = %q, %v; want %q, %v", method, params, tt.method, tt.params)
			}
		})
	}
}

func TestRenderChallengeRefuses(t *testing.T) {
	tests := []struct {
		name   string
		method string
		params []Param
	}{
		{"empty method", "", nil},
		{"quote in method", `a"b`, nil},
		{"empty value", "apple-as-web", []Param{{"url", ""}}},
		{"quote in value", "apple-as-web", []Param{{"url", `https://x/"`}}},
		{"backslash in value", "apple-as-web", []Param{{"url", `https://x/\`}}},
		{"newline in value", "apple-as-web", []Param{{"url", "https://x/\r\nSet-Cookie: a=b"}}},
		{"tab in value", "apple-as-web", []Param{{"url", "a\tb"}}},
		{"DEL in value", "apple-as-web", []Param{{"url", "a\x7fb"}}},
		{"non-ASCII value", "apple-as-web", []Param{{"url", "https://bücher.example/"}}},
		{"upper-case name", "apple-as-web", []Param{{"URL", "https://x/"}}},
		{"underscore name", "apple-as-web", []Param{{"redirect_url", "https://x/"}}},
		{"name starting with digit", "apple-as-web", []Param{{"1url", "https://x/"}}},
		{"name starting with hyphen", "apple-as-web", []Param{{"-url", "https://x/"}}},
		{"empty name", "apple-as-web", []Param{{"", "https://x/"}}},
		{"name with space", "apple-as-web", []Param{{"u rl", "https://x/"}}},
		{"method as parameter", "apple-as-web", []Param{{"method", "apple-oauth2"}}},
		{"repeated parameter", "apple-as-web", []Param{{"url", "https://a/"}, {"url", "https://b/"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := RenderChallenge(tt.method, tt.params...); err == nil {
				t.Errorf("RenderChallenge = %q, want error", got)
			}
		})
	}
}

func TestWebChallenge(t *testing.T) {
	got, err := WebChallenge("https://mdm.example.com/mdmauth/sign-in/Zm9v_YmFy-")
	if err != nil {
		t.Fatal(err)
	}
	if want := `Bearer method="apple-as-web", url="https://mdm.example.com/mdmauth/sign-in/Zm9v_YmFy-"`; got != want {
		t.Errorf("WebChallenge =\n %s\nwant\n %s", got, want)
	}
	for _, bad := range []string{"", "/sign-in/x", "mdm.example.com/x", "ftp://x/", "https:///x", `https://x/"`, "https://x/\n"} {
		if got, err := WebChallenge(bad); err == nil {
			t.Errorf("WebChallenge(%q) = %q, want error", bad, got)
		}
	}
}

func TestParseChallengeRefuses(t *testing.T) {
	for _, h := range []string{
		``,
		`Bearer`,
		`Bearer `,
		`bearer method="apple-as-web"`,
		`BEARER method="apple-as-web"`,
		`Bearer  method="apple-as-web"`,
		`Basic realm="x"`,
		`Bearer method=apple-as-web`,
		`Bearer method="apple-as-web",url="https://x/"`,
		`Bearer method="apple-as-web",  url="https://x/"`,
		`Bearer method="apple-as-web"; url="https://x/"`,
		`Bearer method="apple-as-web", url="https://x/", `,
		`Bearer method="apple-as-web", url="https://x/`,
		`Bearer method="apple-as-web", url=""`,
		`Bearer method="apple-as-web", URL="https://x/"`,
		`Bearer method="apple-as-web", url="https://x/", url="https://y/"`,
		`Bearer method="apple-as-web", method="apple-oauth2"`,
		`Bearer url="https://x/", method="apple-as-web"`,
		`Bearer method="apple-as-web", url="a\"b"`,
		`Bearer method="apple-as-web" `,
		`Bearer method="apple-as-web", Bearer method="apple-oauth2"`,
		"Bearer method=\"apple-as-web\", url=\"https://x/\xff\"",
	} {
		if m, p, err := ParseChallenge(h); err == nil {
			t.Errorf("ParseChallenge(%q) = %q, %v; want error", h, m, p)
		}
	}
}

func TestAuthenticationResultsURL(t *testing.T) {
	tests := []struct{ token, want string }{
		{"abc-DEF_123", "apple-remotemanagement-user-login://authentication-results?access-token=abc-DEF_123"},
		{"a+b/c=", "apple-remotemanagement-user-login://authentication-results?access-token=a%2Bb%2Fc%3D"},
		{"a b&c", "apple-remotemanagement-user-login://authentication-results?access-token=a+b%26c"},
	}
	for _, tt := range tests {
		got := AuthenticationResultsURL(tt.token)
		if got != tt.want {
			t.Errorf("AuthenticationResultsURL(%q) = %q, want %q", tt.token, got, tt.want)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme != CallbackScheme || u.Host != "authentication-results" || u.Query().Get("access-token") != tt.token {
			t.Errorf("AuthenticationResultsURL(%q) parses to %+v", tt.token, u)
		}
	}
	if !strings.HasPrefix(AuthenticationResultsURL("x"), CallbackScheme+"://") {
		t.Error("wrong scheme")
	}
}
