package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestExchange(t *testing.T) {
	e := newOAuthEnv(t)
	cg := e.codeGrant("alice")
	cg.SignedInAt = epoch.Add(-time.Minute)
	cg.Profile, cg.RequiredAppID = "corp", 1234567
	code := e.code(cg)
	e.clock.Advance(10 * time.Second)
	now := e.clock.Now()

	p := e.exchange(code, "")

	if !WellFormed(p.AccessToken) || p.ExpiresIn != int64(accessTTL/time.Second) {
		t.Errorf("access token well-formed=%v, expires_in=%d; want %d", WellFormed(p.AccessToken), p.ExpiresIn, int64(accessTTL/time.Second))
	}
	famID := familyOf(t, p.RefreshToken)
	if p.Family == nil || p.Family.ID != famID {
		t.Fatalf("Family = %+v, want the family the refresh token names", p.Family)
	}
	if p.AccessToken == code || strings.Contains(p.RefreshToken, code) || strings.Contains(p.RefreshToken, p.AccessToken) {
		t.Error("the response reuses the code or the access token")
	}

	tok := e.valid(p.AccessToken, "access token")
	g := cg.Grant
	if tok == nil || tok.Hash != p.Access.Hash || tok.FamilyID != famID || tok.EnrollmentID != "" ||
		tok.Issuer != g.Issuer || tok.Subject != g.Subject || tok.SessionID != g.SessionID ||
		tok.UserIdentifier != g.UserIdentifier || tok.ManagedAppleID != g.ManagedAppleID ||
		tok.Mode != g.Mode || tok.ModelFamily != g.ModelFamily ||
		tok.Profile != g.Profile || tok.RequiredAppID != g.RequiredAppID ||
		!tok.IssuedAt.Equal(now) || !tok.ExpiresAt.Equal(now.Add(accessTTL)) {
		t.Errorf("access token record %+v", tok)
	}

	f := e.fam(famID)
	if f.ClientID != testClient || f.Issuer != g.Issuer || f.Subject != g.Subject ||
		f.SessionID != g.SessionID || f.ManagedAppleID != g.ManagedAppleID || f.Mode != g.Mode ||
		f.UserIdentifier != g.UserIdentifier || f.ModelFamily != g.ModelFamily || f.EnrollmentID != "" ||
		f.Profile != g.Profile || f.RequiredAppID != g.RequiredAppID {
		t.Errorf("family identity %+v", f)
	}
	if f.RefreshHash != HashOf(p.RefreshToken) || f.PreviousHash != (store.Hash{}) || f.Generation != 0 ||
		!f.RotatedAt.IsZero() || !f.RevokedAt.IsZero() {
		t.Errorf("family refresh state %+v", f)
	}
	if !f.SignedInAt.Equal(cg.SignedInAt) || !f.ExpiresAt.Equal(now.Add(refreshTTL)) ||
		!f.RevalidatedAt.Equal(now) || !f.CreatedAt.Equal(now) {
		t.Errorf("family times %+v", f)
	}
	if string(f.IdPRefresh) != string(cg.IdPRefresh) || f.IdPKeyID != cg.IdPKeyID {
		t.Errorf("family provider token %q/%q, want the code's", f.IdPRefresh, f.IdPKeyID)
	}
	if got := e.familyTokens(famID); len(got) != 1 || !got[p.Access.Hash] {
		t.Errorf("family tokens %v, want the access token", got)
	}
	if c := e.codeRecord(code); !c.UsedAt.Equal(now) || c.FamilyID != famID {
		t.Errorf("code record UsedAt=%s FamilyID=%q, want used now for the family", c.UsedAt, c.FamilyID)
	}

	// A refreshed access token is issued to the same user with the same
	// policy choices.
	e.clock.Advance(time.Minute)
	p1 := e.refresh(p.RefreshToken)
	if a := e.tok(p1.Access.Hash); a.Issuer != g.Issuer || a.Subject != g.Subject || a.SessionID != g.SessionID ||
		a.UserIdentifier != g.UserIdentifier || a.ManagedAppleID != g.ManagedAppleID || a.Mode != g.Mode ||
		a.ModelFamily != g.ModelFamily || a.Profile != g.Profile || a.RequiredAppID != g.RequiredAppID ||
		a.FamilyID != famID || a.EnrollmentID != "" {
		t.Errorf("refreshed access token record %+v", a)
	}

	// A sign-in that does not say when it happened starts the clock now.
	now = e.clock.Now()
	cg = e.codeGrant("bob")
	cg.SignedInAt = time.Time{}
	p2 := e.exchange(e.code(cg), "")
	if got := e.fam(p2.Family.ID); !got.SignedInAt.Equal(now) {
		t.Errorf("SignedInAt = %s, want the exchange time", got.SignedInAt)
	}
	if p2.Family.ID == famID || p2.AccessToken == p.AccessToken {
		t.Error("two sign-ins share a family or an access token")
	}
}

// assertNothingIssued fails if a refused redemption of code left a usable
// family or any access token.
func (e *oenv) assertNothingIssued(code string) {
	e.tb.Helper()
	c := e.codeRecord(code)
	if c.FamilyID == "" {
		return
	}
	f, err := e.store.Family(e.ctx, c.FamilyID)
	if !errors.Is(err, store.ErrNotFound) && (err != nil || f.RevokedAt.IsZero()) {
		e.tb.Errorf("a refused redemption created family %+v (%v)", f, err)
	}
	if toks := e.familyTokens(c.FamilyID); len(toks) != 0 {
		e.tb.Errorf("a refused redemption issued %d access tokens", len(toks))
	}
}

func TestExchangeRefused(t *testing.T) {
	s256 := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	short := strings.Repeat("v", 42)
	long := strings.Repeat("v", 129)
	tests := []struct {
		name                   string
		challenge              string
		advance                time.Duration
		client, redirect, verf string
		reason                 string
	}{
		{name: "expired", advance: DefaultCodeTTL, reason: "code_expired"},
		{name: "long expired", advance: DefaultCodeTTL + 50*time.Second, reason: "code_expired"},
		{name: "other client", client: "com.example.other", reason: "client_mismatch"},
		{name: "empty client", client: "-", reason: "client_mismatch"},
		{name: "other redirect", redirect: testRedirect + "/x", reason: "redirect_mismatch"},
		{name: "redirect case", redirect: strings.ToUpper(testRedirect), reason: "redirect_mismatch"},
		{name: "empty redirect", redirect: "-", reason: "redirect_mismatch"},
		{name: "wrong verifier", challenge: pkceChallenge, verf: pkceVerifier[1:] + "A", reason: "pkce_failed"},
		{name: "missing verifier", challenge: pkceChallenge, reason: "pkce_failed"},
		{name: "challenge as verifier", challenge: pkceChallenge, verf: pkceChallenge, reason: "pkce_failed"},
		// S256 only: a "plain" challenge (the verifier itself) never matches.
		{name: "plain method", challenge: pkceVerifier, verf: pkceVerifier, reason: "pkce_failed"},
		{name: "verifier too short", challenge: s256(short), verf: short, reason: "pkce_failed"},
		{name: "verifier too long", challenge: s256(long), verf: long, reason: "pkce_failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newOAuthEnv(t)
			cg := e.codeGrant("alice")
			cg.CodeChallenge = tt.challenge
			code := e.code(cg)
			e.clock.Advance(tt.advance)
			client, redirect := testClient, testRedirect
			switch tt.client {
			case "":
			case "-":
				client = ""
			default:
				client = tt.client
			}
			switch tt.redirect {
			case "":
			case "-":
				redirect = ""
			default:
				redirect = tt.redirect
			}
			p, err := e.o.Exchange(e.ctx, code, client, redirect, tt.verf)
			if p != nil {
				t.Errorf("Exchange returned a pair with %v", err)
			}
			wantGrant(t, err, tt.reason, code, tt.verf)
			e.assertNothingIssued(code)
		})
	}
}

func TestExchangeUnknownCode(t *testing.T) {
	e := newOAuthEnv(t)
	code := e.code(e.codeGrant("alice"))
	for name, tc := range map[string]struct{ code, reason string }{
		"empty":     {"", "malformed_code"},
		"short":     {code[:42], "malformed_code"},
		"long":      {code + "A", "malformed_code"},
		"padded":    {code[:42] + "=", "malformed_code"},
		"std b64":   {code[:42] + "+", "malformed_code"},
		"space":     {" " + code[1:], "malformed_code"},
		"unknown":   {mustMint(t, nil), "unknown_code"},
		"refresh":   {"AAAAAAAAAAAAAAAA." + code, "malformed_code"},
		"uppercase": {strings.ToUpper(code[:1]) + strings.ToLower(code[1:]), "unknown_code"},
	} {
		if tc.code == code {
			continue
		}
		_, err := e.o.Exchange(e.ctx, tc.code, testClient, testRedirect, "")
		if msg := grantErr(err, tc.reason, tc.code); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
	// None of that touched the real code.
	if c := e.codeRecord(code); !c.UsedAt.IsZero() {
		t.Fatalf("code used: %+v", c)
	}
	e.exchange(code, "")
}

func TestExchangeCodeLifetime(t *testing.T) {
	e := newOAuthEnv(t)
	code := e.code(e.codeGrant("alice"))
	if c := e.codeRecord(code); !c.ExpiresAt.Equal(epoch.Add(DefaultCodeTTL)) {
		t.Errorf("code ExpiresAt = %s, want %s", c.ExpiresAt, epoch.Add(DefaultCodeTTL))
	}
	e.clock.Advance(DefaultCodeTTL - time.Second)
	e.exchange(code, "")

	e.o.CodeTTL = 5 * time.Second
	code = e.code(e.codeGrant("bob"))
	e.clock.Advance(5 * time.Second)
	_, err := e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
	wantGrant(t, err, "code_expired")
}

func TestExchangePKCE(t *testing.T) {
	e := newOAuthEnv(t)

	cg := e.codeGrant("alice")
	cg.CodeChallenge = pkceChallenge
	p := e.exchange(e.code(cg), pkceVerifier)
	e.valid(p.AccessToken, "with the right verifier")

	// The longest verifier RFC 7636 allows.
	long := strings.Repeat("~", 128)
	sum := sha256.Sum256([]byte(long))
	cg.CodeChallenge = base64.RawURLEncoding.EncodeToString(sum[:])
	e.exchange(e.code(cg), long)

	// PKCE is not required (devices send none)...
	e.exchange(e.code(e.codeGrant("bob")), "")
	// ...but a verifier without a challenge is a downgrade (RFC 9700 §2.1.1).
	for _, v := range []string{pkceVerifier, "not a verifier at all"} {
		_, err := e.o.Exchange(e.ctx, e.code(e.codeGrant("carol")), testClient, testRedirect, v)
		wantGrant(t, err, "pkce_downgrade")
	}
}

func TestExchangeCodeReplay(t *testing.T) {
	e := newOAuthEnv(t)
	code := e.code(e.codeGrant("alice"))
	p0 := e.exchange(code, "")
	famID := p0.Family.ID
	p1 := e.refresh(p0.RefreshToken)
	e.clock.Advance(30 * time.Second)

	_, err := e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
	wantGrant(t, err, "code_replay", code)

	f := e.fam(famID)
	if !f.RevokedAt.Equal(e.clock.Now()) || f.RevokeReason != "code_replay" {
		t.Errorf("family RevokedAt=%s reason %q, want revoked now for code_replay", f.RevokedAt, f.RevokeReason)
	}
	e.refused(p0.AccessToken, ReasonRevoked, "first access token")
	e.refused(p1.AccessToken, ReasonRevoked, "refreshed access token")
	for h := range e.familyTokens(famID) {
		if !e.revoked(h) {
			t.Errorf("family token %s not revoked", h.ID())
		}
	}
	for name, rt := range map[string]string{"current": p1.RefreshToken, "first": p0.RefreshToken} {
		_, err := e.o.Refresh(e.ctx, rt, testClient)
		if msg := grantErr(err, "family_revoked", rt); msg != "" {
			t.Errorf("%s refresh token: %s", name, msg)
		}
	}

	// Every later replay is refused the same way and changes nothing.
	e.clock.Advance(time.Minute)
	before := e.snapshot()
	_, err = e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
	wantGrant(t, err, "code_replay")
	e.unchanged(before, "a second replay")
	if got := e.fam(famID); !got.RevokedAt.Equal(f.RevokedAt) || got.RevokeReason != "code_replay" {
		t.Errorf("a second replay changed the revocation: %s %q", got.RevokedAt, got.RevokeReason)
	}
}

func TestExchangeReplayOfRefusedCode(t *testing.T) {
	e := newOAuthEnv(t)
	other := e.signIn("bob")
	code := e.code(e.codeGrant("alice"))
	_, err := e.o.Exchange(e.ctx, code, "com.example.other", testRedirect, "")
	wantGrant(t, err, "client_mismatch")
	_, err = e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
	wantGrant(t, err, "code_replay")
	e.assertNothingIssued(code)
	e.valid(other.AccessToken, "another user's token")
	e.refresh(other.RefreshToken)
}

func TestRefreshRotates(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	seen := map[string]bool{p0.AccessToken: true, p0.RefreshToken: true}
	pairs := []*TokenPair{p0}
	for gen := uint64(1); gen <= 4; gen++ {
		e.clock.Advance(2 * time.Minute)
		prev := pairs[len(pairs)-1]
		p := e.refresh(prev.RefreshToken)
		if seen[p.AccessToken] || seen[p.RefreshToken] || p.AccessToken == p.RefreshToken {
			t.Fatalf("generation %d repeats a token", gen)
		}
		seen[p.AccessToken], seen[p.RefreshToken] = true, true
		if familyOf(t, p.RefreshToken) != famID || !WellFormed(p.AccessToken) {
			t.Errorf("generation %d: refresh token in another family or malformed access token", gen)
		}
		now := e.clock.Now()
		if p.ExpiresIn != int64(accessTTL/time.Second) || !p.Access.ExpiresAt.Equal(now.Add(accessTTL)) ||
			p.Access.FamilyID != famID || p.Access.Subject != "sub-alice" || p.Access.ManagedAppleID != "alice@appleid.example.com" {
			t.Errorf("generation %d access %+v expires_in %d", gen, p.Access, p.ExpiresIn)
		}
		f := e.fam(famID)
		if f.Generation != gen || f.RefreshHash != HashOf(p.RefreshToken) || f.PreviousHash != HashOf(prev.RefreshToken) ||
			!f.RotatedAt.Equal(now) || !f.ExpiresAt.Equal(now.Add(refreshTTL)) || !f.UpdatedAt.Equal(now) ||
			!f.SignedInAt.Equal(epoch) || !f.RevokedAt.IsZero() {
			t.Errorf("generation %d family %+v", gen, f)
		}
		if p.Family.ID != famID || p.Family.Generation != gen {
			t.Errorf("generation %d: response family %+v", gen, p.Family)
		}
		pairs = append(pairs, p)
	}
	// Rotation does not revoke earlier access tokens: they run out.
	for i, p := range pairs {
		e.valid(p.AccessToken, "access token "+string(rune('0'+i)))
	}
	if got := e.familyTokens(famID); len(got) != len(pairs) {
		t.Errorf("family has %d access tokens, want %d", len(got), len(pairs))
	}

	// The successors depend on the key.
	o2 := *e.o
	o2.Key = append([]byte(nil), e.o.Key...)
	o2.Key[0] ^= 1
	a1, r1 := e.o.successors(famID, p0.RefreshToken, nil)
	a2, r2 := o2.successors(famID, p0.RefreshToken, nil)
	if a1 == a2 || r1 == r2 {
		t.Error("successors do not depend on the key")
	}
}

func TestRefreshGraceRetry(t *testing.T) {
	for _, grace := range []time.Duration{0, 10 * time.Second} {
		window := grace
		if window == 0 {
			window = DefaultRefreshGrace
		}
		t.Run(window.String(), func(t *testing.T) {
			e := newOAuthEnv(t)
			e.o.Grace = grace
			p0 := e.signIn("alice")
			famID := p0.Family.ID
			e.clock.Advance(time.Minute)
			p1 := e.refresh(p0.RefreshToken)
			after := e.fam(famID)
			tokens := e.familyTokens(famID)

			for _, d := range []time.Duration{0, window / 2, window - time.Second} {
				e.clock.Advance(d - (e.clock.Now().Sub(after.RotatedAt)))
				p := e.refresh(p0.RefreshToken)
				if !samePair(p, p1) || p.Access.Hash != p1.Access.Hash {
					t.Fatalf("retry after %s: a different pair", d)
				}
				if p.ExpiresIn > p1.ExpiresIn || p.ExpiresIn != p1.ExpiresIn-int64(d/time.Second) {
					t.Errorf("retry after %s: expires_in %d, first %d", d, p.ExpiresIn, p1.ExpiresIn)
				}
				if p.Family == nil || p.Family.ID != famID {
					t.Errorf("retry after %s: Family %+v", d, p.Family)
				}
				f := e.fam(famID)
				if f.Generation != 1 || f.RefreshHash != after.RefreshHash || !f.RotatedAt.Equal(after.RotatedAt) ||
					!f.ExpiresAt.Equal(after.ExpiresAt) || !f.RevokedAt.IsZero() {
					t.Errorf("retry after %s changed the family: %+v", d, f)
				}
				if got := e.familyTokens(famID); len(got) != len(tokens) {
					t.Errorf("retry after %s stored another access token", d)
				}
			}
			e.valid(p0.AccessToken, "first access token")
			e.valid(p1.AccessToken, "rotated access token")
			// The chain goes on from the successor.
			p2 := e.refresh(p1.RefreshToken)
			if samePair(p2, p1) {
				t.Error("the successor rotated to itself")
			}
		})
	}
}

func TestRefreshReuseAfterGrace(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	p1 := e.refresh(p0.RefreshToken)
	e.clock.Advance(DefaultRefreshGrace + time.Second)
	p2 := e.refresh(p1.RefreshToken) // the legitimate client goes on
	e.clock.Advance(DefaultRefreshGrace + time.Second)

	_, err := e.o.Refresh(e.ctx, p1.RefreshToken, testClient)
	wantGrant(t, err, "refresh_reuse", p1.RefreshToken)

	f := e.fam(famID)
	if !f.RevokedAt.Equal(e.clock.Now()) || f.RevokeReason != "refresh_reuse" {
		t.Errorf("family RevokedAt=%s reason %q", f.RevokedAt, f.RevokeReason)
	}
	for i, p := range []*TokenPair{p0, p1, p2} {
		e.refused(p.AccessToken, ReasonRevoked, "access token "+string(rune('0'+i)))
	}
	for i, p := range []*TokenPair{p0, p1, p2} {
		_, err := e.o.Refresh(e.ctx, p.RefreshToken, testClient)
		if msg := grantErr(err, "family_revoked"); msg != "" {
			t.Errorf("refresh token %d: %s", i, msg)
		}
	}
	// Another family of the same user is not touched.
	other := e.signIn("alice")
	e.valid(other.AccessToken, "another family")
}

func TestRefreshReuseJustAfterGrace(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	p1 := e.refresh(p0.RefreshToken)
	e.clock.Advance(DefaultRefreshGrace + time.Second)
	_, err := e.o.Refresh(e.ctx, p0.RefreshToken, testClient)
	wantGrant(t, err, "refresh_reuse")
	e.refused(p1.AccessToken, ReasonRevoked, "newest access token")
	e.refused(p0.AccessToken, ReasonRevoked, "first access token")
	_, err = e.o.Refresh(e.ctx, p1.RefreshToken, testClient)
	wantGrant(t, err, "family_revoked")
}

func TestRefreshOlderGeneration(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	p1 := e.refresh(p0.RefreshToken)
	p2 := e.refresh(p1.RefreshToken)
	// Within the grace window of both rotations, but two generations back.
	_, err := e.o.Refresh(e.ctx, p0.RefreshToken, testClient)
	wantGrant(t, err, "refresh_reuse")
	if f := e.fam(famID); f.RevokedAt.IsZero() || f.RevokeReason != "refresh_reuse" {
		t.Errorf("family %+v, want revoked for reuse", f)
	}
	for i, p := range []*TokenPair{p0, p1, p2} {
		e.refused(p.AccessToken, ReasonRevoked, "access token "+string(rune('0'+i)))
	}
	_, err = e.o.Refresh(e.ctx, p2.RefreshToken, testClient)
	wantGrant(t, err, "family_revoked")
}

func TestRefreshRetryOfUsedSuccessor(t *testing.T) {
	// Only the immediate predecessor of the current refresh token gets the
	// pair again: p0 two rotations back is reuse, even within the window.
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	p1 := e.refresh(p0.RefreshToken)
	p2 := e.refresh(p1.RefreshToken)
	// p1's retry gets p2 again.
	if p := e.refresh(p1.RefreshToken); !samePair(p, p2) {
		t.Fatal("retry of the current predecessor: a different pair")
	}
	_, err := e.o.Refresh(e.ctx, p0.RefreshToken, testClient)
	wantGrant(t, err, "refresh_reuse")
}

func TestRefreshIdleExpiry(t *testing.T) {
	e := newOAuthEnv(t)
	p := e.signIn("alice")
	famID := p.Family.ID
	// Every use moves the idle expiry.
	for i := 0; i < 3; i++ {
		e.clock.Advance(refreshTTL - time.Second)
		p = e.refresh(p.RefreshToken)
	}
	e.clock.Advance(refreshTTL)
	before := e.fam(famID)
	_, err := e.o.Refresh(e.ctx, p.RefreshToken, testClient)
	wantGrant(t, err, "refresh_expired", p.RefreshToken)
	if after := e.fam(famID); after.Generation != before.Generation || after.RefreshHash != before.RefreshHash {
		t.Error("an expired refresh rotated the family")
	}
	if got := e.familyTokens(famID); len(got) != 4 {
		t.Errorf("family has %d tokens, want 4", len(got))
	}

	// Default idle lifetime.
	e.o.RefreshTTL = 0
	p = e.signIn("bob")
	if f := e.fam(p.Family.ID); !f.ExpiresAt.Equal(e.clock.Now().Add(DefaultRefreshTTL)) {
		t.Errorf("ExpiresAt = %s, want now + %s", f.ExpiresAt, DefaultRefreshTTL)
	}
	e.clock.Advance(DefaultRefreshTTL)
	_, err = e.o.Refresh(e.ctx, p.RefreshToken, testClient)
	wantGrant(t, err, "refresh_expired")
}

func TestRefreshSignInEvery(t *testing.T) {
	const every = 30 * 24 * time.Hour
	e := newOAuthEnv(t)
	e.o.SignInEvery = every
	cg := e.codeGrant("alice")
	cg.SignedInAt = epoch.Add(-time.Hour) // the code was minted later than the sign-in
	p := e.exchange(e.code(cg), "")
	famID := p.Family.ID
	for e.clock.Now().Add(6 * 24 * time.Hour).Before(cg.SignedInAt.Add(every)) {
		e.clock.Advance(6 * 24 * time.Hour)
		p = e.refresh(p.RefreshToken)
	}
	e.clock.Advance(cg.SignedInAt.Add(every).Sub(e.clock.Now()) - time.Second)
	p = e.refresh(p.RefreshToken)
	e.clock.Advance(time.Second)
	_, err := e.o.Refresh(e.ctx, p.RefreshToken, testClient)
	wantGrant(t, err, "sign_in_required", p.RefreshToken)
	if f := e.fam(famID); f.RefreshHash != HashOf(p.RefreshToken) || !f.RevokedAt.IsZero() {
		t.Errorf("a refused refresh changed the family: %+v", f)
	}
	// The access tokens already issued still run out on their own.
	e.valid(p.AccessToken, "last access token")
}

func TestRefreshMalformed(t *testing.T) {
	e := newOAuthEnv(t)
	p := e.signIn("alice")
	rt := p.RefreshToken
	famID, secret, _ := strings.Cut(rt, ".")
	tests := map[string]string{
		"empty":             "",
		"dot":               ".",
		"no secret":         famID,
		"empty secret":      famID + ".",
		"no family":         "." + secret,
		"short family":      famID[1:] + "." + secret,
		"long family":       famID + "A." + secret,
		"bad family char":   "+" + famID[1:] + "." + secret,
		"short secret":      famID + "." + secret[1:],
		"long secret":       rt + "A",
		"padded secret":     famID + "." + secret[1:] + "=",
		"two dots":          famID + "." + secret[:21] + "." + secret[22:],
		"trailing space":    rt + " ",
		"leading space":     " " + rt,
		"access token":      p.AccessToken,
		"swapped":           secret + "." + famID,
		"non-ascii":         famID + "." + secret[:41] + "é",
		"other separator":   famID + ":" + secret,
		"null":              famID + "." + secret[:42] + "\x00",
		"access as refresh": famID + "." + p.AccessToken + "A",
	}
	for name, s := range tests {
		_, err := e.o.Refresh(e.ctx, s, testClient)
		if msg := grantErr(err, "malformed_refresh", s); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
	if f := e.fam(famID); !f.RevokedAt.IsZero() || f.Generation != 0 {
		t.Fatalf("malformed tokens changed the family: %+v", f)
	}
	e.valid(p.AccessToken, "access token")
	e.refresh(rt)
}

func TestRefreshUnknownFamily(t *testing.T) {
	e := newOAuthEnv(t)
	p := e.signIn("alice")
	secret := strings.Split(p.RefreshToken, ".")[1]
	for _, id := range []string{"AAAAAAAAAAAAAAAA", "zzzzzzzzzzzzzzzz", "0123456789-_abcd"} {
		// A correctly tagged token of a family that does not exist.
		_, err := e.o.Refresh(e.ctx, e.o.tagged(id+"."+secret), testClient)
		wantGrant(t, err, "unknown_family")
		// A made-up token under a real family id is refused as malformed and
		// revokes nothing.
		_, err = e.o.Refresh(e.ctx, familyOf(t, p.RefreshToken)+"."+secret+".AAAAAAAAAAAAAAAAAAAAAA", testClient)
		wantGrant(t, err, "malformed_refresh")
	}
	e.refresh(p.RefreshToken)
}

func TestRefreshOtherClient(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	p1 := e.refresh(p0.RefreshToken)
	e.clock.Advance(DefaultRefreshGrace + time.Second)
	for _, client := range []string{"com.example.other", "", testClient + " ", strings.ToUpper(testClient)} {
		// Neither the current token nor a spent one: nothing is revoked
		// on behalf of another client.
		for _, rt := range []string{p1.RefreshToken, p0.RefreshToken} {
			_, err := e.o.Refresh(e.ctx, rt, client)
			if msg := grantErr(err, "client_mismatch", rt); msg != "" {
				t.Errorf("client %q: %s", client, msg)
			}
		}
	}
	if f := e.fam(famID); !f.RevokedAt.IsZero() || f.Generation != 1 {
		t.Fatalf("another client's attempts changed the family: %+v", f)
	}
	e.valid(p1.AccessToken, "access token")
	e.refresh(p1.RefreshToken)
}

func TestRefreshRevokedFamily(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	p1 := e.refresh(p0.RefreshToken)
	other := e.signIn("alice")
	e.clock.Advance(time.Minute)
	if err := e.o.RevokeFamily(e.ctx, p0.Family.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	f := e.fam(p0.Family.ID)
	if !f.RevokedAt.Equal(e.clock.Now()) || f.RevokeReason != "operator" {
		t.Errorf("family %+v", f)
	}
	e.refused(p0.AccessToken, ReasonRevoked, "first access token")
	e.refused(p1.AccessToken, ReasonRevoked, "second access token")
	e.valid(other.AccessToken, "other family")
	// Within the grace window too: a revoked family gets nothing.
	for _, rt := range []string{p0.RefreshToken, p1.RefreshToken} {
		_, err := e.o.Refresh(e.ctx, rt, testClient)
		wantGrant(t, err, "family_revoked")
	}
	// Revoking again keeps the first reason; an unknown family is no error.
	e.clock.Advance(time.Minute)
	if err := e.o.RevokeFamily(e.ctx, p0.Family.ID, "again"); err != nil {
		t.Fatal(err)
	}
	if g := e.fam(p0.Family.ID); !g.RevokedAt.Equal(f.RevokedAt) || g.RevokeReason != "operator" {
		t.Errorf("second revocation changed %+v", g)
	}
	if err := e.o.RevokeFamily(e.ctx, "AAAAAAAAAAAAAAAA", "x"); err != nil {
		t.Errorf("RevokeFamily(unknown) = %v", err)
	}
}

func TestOAuthErrorString(t *testing.T) {
	err := grantError("refresh_reuse", "refresh token already used")
	if got, want := err.Error(), "oauth2: invalid_grant: refresh_reuse"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var oe *OAuthError
	if !errors.As(error(err), &oe) || oe.Code != ErrCodeInvalidGrant {
		t.Error("grantError is not an invalid_grant *OAuthError")
	}
}

func BenchmarkRefresh(b *testing.B) {
	e := newOAuthEnv(b)
	rt := e.signIn("alice").RefreshToken
	b.ReportAllocs()
	for b.Loop() {
		p, err := e.o.Refresh(e.ctx, rt, testClient)
		if err != nil {
			b.Fatal(err)
		}
		rt = p.RefreshToken
	}
}

// A store copy (the rotation key and a family record) and one refresh
// token derive at most the next pair: the salt of later rotations is drawn
// when they happen, so the family's later tokens cannot be computed.
func TestRefreshSaltLimitsDerivation(t *testing.T) {
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	stolen := e.fam(famID) // the family record as a store copy holds it
	if len(stolen.Salt) != saltLen || len(stolen.PreviousSalt) != 0 {
		t.Fatalf("new family: salt %d bytes, previous %d bytes", len(stolen.Salt), len(stolen.PreviousSalt))
	}
	e.clock.Advance(time.Minute)
	p1 := e.refresh(p0.RefreshToken)
	e.clock.Advance(time.Minute)
	p2 := e.refresh(p1.RefreshToken)

	// One step is derivable from the copy (as it is usable anyway).
	if a, r := e.o.successors(famID, p0.RefreshToken, stolen.Salt); a != p1.AccessToken || r != p1.RefreshToken {
		t.Fatal("the first successors are not derived from the salt of the family's record")
	}
	// The next is not, under any salt the copy holds or none.
	for name, salt := range map[string][]byte{"the copy's salt": stolen.Salt, "no salt": nil} {
		if a, r := e.o.successors(famID, p1.RefreshToken, salt); a == p2.AccessToken || r == p2.RefreshToken {
			t.Errorf("the second rotation's tokens derived from %s", name)
		}
	}
	after := e.fam(famID)
	if bytes.Equal(after.Salt, stolen.Salt) || bytes.Equal(after.Salt, after.PreviousSalt) || len(after.Salt) != saltLen {
		t.Error("the salt is not renewed at each rotation")
	}
	// A retry of the last refresh within the grace window still gets the
	// same pair (derived under the previous salt).
	if p := e.refresh(p1.RefreshToken); p.AccessToken != p2.AccessToken || p.RefreshToken != p2.RefreshToken {
		t.Error("a retry within the grace window got another pair")
	}
}
