package device

import (
	"net/http"
	"net/url"
	"testing"
)

func TestEscapeQueryValue(t *testing.T) {
	tests := []struct{ in, keep, want string }{
		{"a+b@example.com", keepIdentifier, "a+b@example.com"},
		{"a b&c=d@x", keepIdentifier, "a%20b%26c%3Dd@x"},
		{"apple-remotemanagement-user-login:/oauth2/redirection", keepTokenBody, "apple-remotemanagement-user-login:/oauth2/redirection"},
		{"a+b/c:d=e", "", "a%2Bb%2Fc%3Ad%3De"},
		{"é", "", "%C3%A9"},
	}
	for _, tc := range tests {
		if got := escapeQueryValue(tc.in, tc.keep); got != tc.want {
			t.Errorf("escapeQueryValue(%q, %q) = %q, want %q", tc.in, tc.keep, got, tc.want)
		}
	}
}

func TestFormActionPolicy(t *testing.T) {
	self, _ := url.Parse("https://idp.example.com/login")
	cb, _ := url.Parse("apple-remotemanagement-user-login://authentication-results?access-token=x")
	same, _ := url.Parse("https://idp.example.com/callback")
	other, _ := url.Parse("https://mdm.example.com:8443/cb")
	tests := []struct {
		csp                  string
		cb, same, otherAllow bool
	}{
		{"", true, true, true},
		{"default-src 'none'", true, true, true}, // default-src does not cover form-action
		{"form-action 'none'", false, false, false},
		{"form-action 'self'", false, true, false},
		{"form-action *", false, true, true},
		{"form-action 'self' apple-remotemanagement-user-login:", true, true, false},
		{"form-action https:", false, true, true},
		{"form-action https://*.example.com:*", false, true, true},
		{"form-action mdm.example.com:8443", false, false, true},
		{"form-action mdm.example.com", false, false, false},
		{"form-action *; form-action 'none'", false, true, true}, // only the first directive of a policy counts
	}
	for _, tc := range tests {
		h := http.Header{}
		if tc.csp != "" {
			h.Set("Content-Security-Policy", tc.csp)
		}
		p := parseFormAction(h, self)
		if got := p.allows(cb); got != tc.cb {
			t.Errorf("%q allows the callback = %t, want %t", tc.csp, got, tc.cb)
		}
		if got := p.allows(same); got != tc.same {
			t.Errorf("%q allows same origin = %t, want %t", tc.csp, got, tc.same)
		}
		if got := p.allows(other); got != tc.otherAllow {
			t.Errorf("%q allows another origin = %t, want %t", tc.csp, got, tc.otherAllow)
		}
	}
	// Two policies: both must allow.
	h := http.Header{"Content-Security-Policy": {"form-action *", "form-action 'self'"}}
	if parseFormAction(h, self).allows(other) {
		t.Error("a second policy's form-action was ignored")
	}
}

func TestNewUDIDShapes(t *testing.T) {
	r := zeroReader{}
	if u, _ := newUDID(r, "iPhone"); len(u) != 25 || u[8] != '-' {
		t.Errorf("iPhone UDID %q", u)
	}
	if u, _ := newUDID(r, "Mac"); len(u) != 36 {
		t.Errorf("Mac UDID %q", u)
	}
	if u, _ := newUUID(r); u != "00000000-0000-4000-8000-000000000000" {
		t.Errorf("UUID from zeros = %q", u)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
