package signin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
)

// logoutToken returns a logout token of the test provider, failing the
// test on error.
func (e *env) logoutToken(l fakeidp.Logout) string {
	e.t.Helper()
	raw, err := e.idp.LogoutToken(l)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// unsigned builds a compact JWT with the given header and claims and an
// empty signature.
func unsigned(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	h, err1 := json.Marshal(header)
	c, err2 := json.Marshal(claims)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// validClaims are the claims of an acceptable logout token at the test
// clock's now.
func (e *env) validClaims() map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": e.idp.Issuer, "aud": e.idp.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": "jti-1", "sub": "alice-sub", "sid": "sid-alice",
		"events": map[string]any{LogoutEvent: map[string]any{}},
	}
}

func TestVerifyLogoutTokenAccepts(t *testing.T) {
	e := newEnv(t)
	iat := e.clock.Now()
	tests := []struct {
		name string
		l    fakeidp.Logout
		sub  string
		sid  string
	}{
		{"sub and sid", fakeidp.Logout{Subject: "alice-sub", SessionID: "sid-alice"}, "alice-sub", "sid-alice"},
		{"sid only", fakeidp.Logout{SessionID: "sid-alice"}, "", "sid-alice"},
		{"sub only", fakeidp.Logout{Subject: "alice-sub"}, "alice-sub", ""},
		{"no typ header", fakeidp.Logout{Subject: "alice-sub", NoType: true}, "alice-sub", ""},
		{"typ with application/", fakeidp.Logout{Subject: "alice-sub", Type: "application/logout+jwt"}, "alice-sub", ""},
		{"typ in other case", fakeidp.Logout{Subject: "alice-sub", Type: "Logout+JWT"}, "alice-sub", ""},
		{"aud array", fakeidp.Logout{Subject: "alice-sub", Claims: map[string]any{"aud": []string{"other-client", e.idp.ClientID}}}, "alice-sub", ""},
		{"events with members", fakeidp.Logout{Subject: "alice-sub", Claims: map[string]any{"events": map[string]any{
			LogoutEvent: map[string]any{"reason": "user"}, "https://example.com/other": map[string]any{}}}}, "alice-sub", ""},
		{"iat within the leeway ahead", fakeidp.Logout{Subject: "alice-sub", Claims: map[string]any{"iat": iat.Add(30 * time.Second).Unix()}}, "alice-sub", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := e.logoutToken(tt.l)
			lt, err := e.rp.VerifyLogoutToken(e.ctx, raw)
			if err != nil {
				t.Fatalf("VerifyLogoutToken: %v", err)
			}
			if lt.Issuer != e.idp.Issuer || lt.Subject != tt.sub || lt.SessionID != tt.sid || !strings.HasPrefix(lt.JTI, "jti-") {
				t.Errorf("got iss %q sub %q sid %q jti %q", lt.Issuer, lt.Subject, lt.SessionID, lt.JTI)
			}
		})
	}
}

func TestLogoutTokenReplayWindow(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	// A long-lived token is remembered until iat + max age (+ leeway).
	raw := e.logoutToken(fakeidp.Logout{Subject: "alice-sub", Claims: map[string]any{"exp": now.Add(time.Hour).Unix(), "jti": "j-1"}})
	lt, err := (&Logout{RP: e.rp, MaxAge: 5 * time.Minute, Leeway: 30 * time.Second}).VerifyLogoutToken(e.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(5*time.Minute + 30*time.Second); !lt.ReplayUntil.Equal(want) {
		t.Errorf("ReplayUntil %v, want iat + max age + leeway %v", lt.ReplayUntil, want)
	}
	if !lt.IssuedAt.Equal(now) || !lt.Expiry.Equal(now.Add(time.Hour)) {
		t.Errorf("iat %v exp %v", lt.IssuedAt, lt.Expiry)
	}
	// A short-lived one until exp (+ leeway).
	raw = e.logoutToken(fakeidp.Logout{Subject: "alice-sub", Claims: map[string]any{"exp": now.Add(time.Minute).Unix(), "jti": "j-1"}})
	lt2, err := e.rp.VerifyLogoutToken(e.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(time.Minute + DefaultLogoutLeeway); !lt2.ReplayUntil.Equal(want) {
		t.Errorf("ReplayUntil %v, want exp + leeway %v", lt2.ReplayUntil, want)
	}
	// The replay key names iss and jti, hashed and namespaced.
	if lt.ReplayKey() != lt2.ReplayKey() || !strings.HasPrefix(lt.ReplayKey(), "bcl:") || strings.Contains(lt.ReplayKey(), "j-1") ||
		len(lt.ReplayKey()) != len("bcl:")+64 {
		t.Errorf("replay keys %q, %q: want the same bcl:<sha256 hex> for the same iss and jti", lt.ReplayKey(), lt2.ReplayKey())
	}
	other := *lt
	other.JTI = "j-2"
	if other.ReplayKey() == lt.ReplayKey() {
		t.Error("another jti has the same replay key")
	}
	other = *lt
	other.Issuer = "https://other.example.com"
	if other.ReplayKey() == lt.ReplayKey() {
		t.Error("another issuer has the same replay key")
	}
}

func TestVerifyLogoutTokenRefusals(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(e.validClaims())
	hsObj, err := hs.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	hsRaw, _ := hsObj.CompactSerialize()

	sign := func(l fakeidp.Logout) func() string { return func() string { return e.logoutToken(l) } }
	with := func(claims map[string]any) func() string {
		return sign(fakeidp.Logout{Subject: "alice-sub", SessionID: "sid-alice", Claims: claims})
	}
	tests := []struct {
		name  string
		raw   func() string
		want  LogoutReason
		local bool // refused before any request to the provider
	}{
		{"bad signature", sign(fakeidp.Logout{Subject: "alice-sub", SigningKey: fakeidp.OtherKey()}), LogoutSignature, false},
		{"alg none", func() string {
			return unsigned(t, map[string]any{"alg": "none", "typ": "logout+jwt"}, e.validClaims())
		}, LogoutAlg, true},
		{"alg None", func() string { return unsigned(t, map[string]any{"alg": "None"}, e.validClaims()) }, LogoutAlg, true},
		{"alg HS256 (the client secret as key)", func() string { return hsRaw }, LogoutAlg, false},
		{"alg not advertised", func() string {
			return unsigned(t, map[string]any{"alg": "ES256", "kid": "key-1"}, e.validClaims()) + "c2ln"
		}, LogoutAlg, false},
		{"typ JWT (an ID token)", sign(fakeidp.Logout{Subject: "alice-sub", Type: "JWT"}), LogoutType, true},
		{"typ at+jwt", sign(fakeidp.Logout{Subject: "alice-sub", Type: "at+jwt"}), LogoutType, true},
		{"typ not a string", func() string {
			return unsigned(t, map[string]any{"alg": "RS256", "typ": 1}, e.validClaims()) + "c2ln"
		}, LogoutType, true},
		{"wrong issuer", with(map[string]any{"iss": "https://evil.example.com"}), LogoutIssuer, false},
		{"no issuer", with(map[string]any{"iss": nil}), LogoutIssuer, false},
		{"wrong audience", with(map[string]any{"aud": "other-client"}), LogoutAudience, false},
		{"audience list without us", with(map[string]any{"aud": []string{"a", "b"}}), LogoutAudience, false},
		{"no audience", with(map[string]any{"aud": nil}), LogoutAudience, false},
		{"no events", with(map[string]any{"events": nil}), LogoutEvents, false},
		{"events not an object", with(map[string]any{"events": []string{LogoutEvent}}), LogoutEvents, false},
		{"events null", with(map[string]any{"events": json.RawMessage("null")}), LogoutEvents, false},
		{"events without the logout member", with(map[string]any{"events": map[string]any{"https://example.com/x": map[string]any{}}}), LogoutEvents, false},
		{"logout event not an object", with(map[string]any{"events": map[string]any{LogoutEvent: "yes"}}), LogoutEvents, false},
		{"logout event null", with(map[string]any{"events": map[string]any{LogoutEvent: nil}}), LogoutEvents, false},
		{"nonce present", with(map[string]any{"nonce": "n-1"}), LogoutNonce, false},
		{"no sub or sid", sign(fakeidp.Logout{}), LogoutNoSubject, false},
		{"empty sub and sid", sign(fakeidp.Logout{Claims: map[string]any{"sub": "", "sid": ""}}), LogoutNoSubject, false},
		{"sub not a string", with(map[string]any{"sub": 42}), LogoutMalformed, false},
		{"no jti", with(map[string]any{"jti": nil}), LogoutNoJTI, false},
		{"empty jti", with(map[string]any{"jti": ""}), LogoutNoJTI, false},
		{"expired", with(map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}), LogoutExpired, false},
		{"no exp", with(map[string]any{"exp": nil}), LogoutExpired, false},
		{"exp not a number", with(map[string]any{"exp": "tomorrow"}), LogoutMalformed, false},
		{"iat too old", with(map[string]any{"iat": now.Add(-11 * time.Minute).Unix()}), LogoutTooOld, false},
		{"iat in the future", with(map[string]any{"iat": now.Add(5 * time.Minute).Unix()}), LogoutIssuedAt, false},
		{"no iat", with(map[string]any{"iat": nil}), LogoutIssuedAt, false},
		{"oversized", func() string { return strings.Repeat("a", MaxLogoutTokenSize+1) }, LogoutOversized, true},
		{"encrypted", func() string { return "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d" }, LogoutEncrypted, true},
		{"two parts", func() string { return "eyJhbGciOiJSUzI1NiJ9.e30" }, LogoutMalformed, true},
		{"header not base64url", func() string { return "!!!.e30.c2ln" }, LogoutBadHeader, true},
		{"header not JSON", func() string { return base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".e30.c2ln" }, LogoutBadHeader, true},
		{"header too large", func() string {
			return unsigned(t, map[string]any{"alg": "RS256", "x": strings.Repeat("x", 4096)}, e.validClaims()) + "c2ln"
		}, LogoutBadHeader, true},
		{"empty", func() string { return "" }, LogoutMalformed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.raw()
			e.secret(raw)
			before := e.idp.Hits(fakeidp.Discovery) + e.idp.Hits(fakeidp.JWKS)
			lt, err := e.rp.VerifyLogoutToken(e.ctx, raw)
			if lt != nil || !errors.Is(err, ErrLogoutToken) || LogoutReasonOf(err) != tt.want {
				t.Fatalf("got %+v, %v; want a refusal for %s", lt, err, tt.want)
			}
			if len(raw) > 20 && strings.Contains(err.Error(), raw[len(raw)-20:]) {
				t.Error("the error carries the token")
			}
			if after := e.idp.Hits(fakeidp.Discovery) + e.idp.Hits(fakeidp.JWKS); tt.local && after != before {
				t.Errorf("refused only after %d requests to the provider", after-before)
			}
		})
	}
}

func TestVerifyLogoutTokenMaxAge(t *testing.T) {
	e := newEnv(t)
	raw := e.logoutToken(fakeidp.Logout{Subject: "alice-sub"})
	e.clock.Advance(2 * time.Minute)
	// exp is two minutes after iat: within the default leeway it is still
	// valid, but not for a verifier that allows only one minute of age.
	if _, err := (&Logout{RP: e.rp, MaxAge: time.Minute}).VerifyLogoutToken(e.ctx, raw); LogoutReasonOf(err) != LogoutTooOld {
		t.Errorf("with max age 1m: %v, want %s", err, LogoutTooOld)
	}
	if _, err := e.rp.VerifyLogoutToken(e.ctx, raw); err != nil {
		t.Errorf("with the default max age: %v", err)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.rp.VerifyLogoutToken(e.ctx, raw); LogoutReasonOf(err) != LogoutExpired {
		t.Errorf("past exp and the leeway: %v, want %s", err, LogoutExpired)
	}
}

func TestVerifyLogoutTokenProviderDown(t *testing.T) {
	for _, ep := range []fakeidp.Endpoint{fakeidp.Discovery, fakeidp.JWKS} {
		t.Run(string(ep), func(t *testing.T) {
			e := newEnv(t)
			raw := e.logoutToken(fakeidp.Logout{Subject: "alice-sub"})
			e.idp.SetDown(ep, 503)
			_, err := e.rp.VerifyLogoutToken(e.ctx, raw)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrLogoutToken) {
				t.Fatalf("provider %s down: %v, want ErrUnavailable (not a refusal)", ep, err)
			}
			e.idp.SetDown(ep, 0)
			e.clock.Advance(retryAfter)
			// go-oidc forgets a failed key fetch asynchronously, just after
			// handing its result to the waiting caller: allow that moment.
			var err2 error
			for range 50 {
				if _, err2 = e.rp.VerifyLogoutToken(e.ctx, raw); err2 == nil || !errors.Is(err2, ErrUnavailable) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err2 != nil {
				t.Errorf("after the provider is back: %v", err2)
			}
		})
	}
}
