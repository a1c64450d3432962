package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

const (
	testClient   = "com.example.mdm-client"
	testRedirect = "https://mdm.example.com/oauth2/redirect"
	// accessTTL is the access token lifetime of the OAuth 2 test setup.
	accessTTL = time.Hour
	// refreshTTL is its idle refresh token lifetime.
	refreshTTL = 7 * 24 * time.Hour
)

// RFC 7636 appendix B.
const (
	pkceVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	pkceChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// oenv is an OAuth issuer on the env's Manager, Badger store and clock.
// Grace, CodeTTL and RevalidateEvery are left at their defaults.
type oenv struct {
	*env
	o *OAuth
}

func newOAuthEnv(tb testing.TB) *oenv {
	tb.Helper()
	e := newEnv(tb)
	e.m.Lifetime = Lifetime{TTL: accessTTL, Floor: OAuthFloor}
	return &oenv{env: e, o: &OAuth{
		M:          e.m,
		Key:        bytes.Repeat([]byte{0x5a}, 32),
		RefreshTTL: refreshTTL,
	}}
}

// codeGrant is the sign-in of user through the test client.
func (e *oenv) codeGrant(user string) CodeGrant {
	return CodeGrant{
		Grant:       grant(user),
		ClientID:    testClient,
		RedirectURI: testRedirect,
		SignedInAt:  e.clock.Now(),
		IdPRefresh:  []byte("sealed-idp-refresh-" + user),
		IdPKeyID:    "k1",
	}
}

// code mints a code for cg.
func (e *oenv) code(cg CodeGrant) string {
	e.tb.Helper()
	c, err := e.o.NewCode(e.ctx, cg)
	if err != nil {
		e.tb.Fatalf("NewCode: %v", err)
	}
	if !WellFormed(c) {
		e.tb.Fatalf("NewCode returned a malformed code (%d characters)", len(c))
	}
	return c
}

// exchange redeems code and fails the test on error.
func (e *oenv) exchange(code, verifier string) *TokenPair {
	e.tb.Helper()
	p, err := e.o.Exchange(e.ctx, code, testClient, testRedirect, verifier)
	if err != nil {
		e.tb.Fatalf("Exchange: %v", err)
	}
	e.hashes = append(e.hashes, p.Access.Hash)
	return p
}

// signIn is a complete sign-in of user: a code, redeemed at once.
func (e *oenv) signIn(user string) *TokenPair {
	e.tb.Helper()
	return e.exchange(e.code(e.codeGrant(user)), "")
}

// refresh rotates rt and fails the test on error.
func (e *oenv) refresh(rt string) *TokenPair {
	e.tb.Helper()
	p, err := e.o.Refresh(e.ctx, rt, testClient)
	if err != nil {
		e.tb.Fatalf("Refresh: %v", err)
	}
	if p.Family == nil || p.Access == nil {
		e.tb.Fatalf("Refresh returned Family=%v Access=%v", p.Family, p.Access)
	}
	e.hashes = append(e.hashes, p.Access.Hash)
	return p
}

// fam returns the stored family.
func (e *oenv) fam(id string) *store.Family {
	e.tb.Helper()
	f, err := e.store.Family(e.ctx, id)
	if err != nil {
		e.tb.Fatalf("family: %v", err)
	}
	return f
}

// familyOf returns the id a refresh token names.
func familyOf(tb testing.TB, rt string) string {
	tb.Helper()
	body := rt
	if i := strings.LastIndexByte(rt, '.'); i >= 0 {
		body = rt[:i] // drop the tag
	}
	id, ok := parseRefresh(body)
	if !ok {
		tb.Fatal("refresh token does not parse")
	}
	return id
}

// familyTokens returns the hashes of the access tokens issued in the family.
func (e *oenv) familyTokens(id string) map[store.Hash]bool {
	e.tb.Helper()
	toks, err := e.store.TokensForFamily(e.ctx, id)
	if err != nil {
		e.tb.Fatal(err)
	}
	out := map[store.Hash]bool{}
	for _, t := range toks {
		out[t.Hash] = true
	}
	return out
}

// codeRecord reads the stored code without changing it.
func (e *oenv) codeRecord(code string) *store.Code {
	e.tb.Helper()
	errRead := errors.New("read only")
	var c store.Code
	_, err := e.store.UpdateCode(e.ctx, HashOf(code), func(r *store.Code) error {
		c = *r
		return errRead
	})
	if !errors.Is(err, errRead) {
		e.tb.Fatalf("code: %v", err)
	}
	return &c
}

// valid fails unless raw passes Lookup.
func (e *oenv) valid(raw, what string) *store.Token {
	e.tb.Helper()
	t, err := e.m.Lookup(e.ctx, raw)
	if err != nil {
		e.tb.Errorf("%s: Lookup: %v, want valid", what, err)
	}
	return t
}

// refused fails unless Lookup refuses raw for reason r.
func (e *oenv) refused(raw string, r Reason, what string) {
	e.tb.Helper()
	if _, err := e.m.Lookup(e.ctx, raw); ReasonOf(err) != r {
		e.tb.Errorf("%s: Lookup: %v, want %s", what, err, r)
	}
}

// grantErr checks that err is an invalid_grant refusal for reason and that
// its message carries none of the secrets.
func grantErr(err error, reason string, secrets ...string) string {
	var oe *OAuthError
	if !errors.As(err, &oe) {
		return "got " + errString(err) + ", want invalid_grant " + reason
	}
	if oe.Code != ErrCodeInvalidGrant || oe.Reason != reason || oe.Description == "" {
		return "got " + oe.Code + "/" + oe.Reason + " (" + oe.Description + "), want invalid_grant/" + reason
	}
	for _, s := range secrets {
		if s != "" && (strings.Contains(oe.Error(), s) || strings.Contains(oe.Description, s)) {
			return "the error carries the presented secret"
		}
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// wantGrant fails the test unless err is an invalid_grant for reason.
func wantGrant(tb testing.TB, err error, reason string, secrets ...string) {
	tb.Helper()
	if msg := grantErr(err, reason, secrets...); msg != "" {
		tb.Fatal(msg)
	}
}

// samePair reports whether two responses carry the same tokens.
func samePair(a, b *TokenPair) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// fakeIdP is a Revalidator that counts its calls.
type fakeIdP struct {
	mu    sync.Mutex
	calls int
	seen  []store.Family
	res   *Revalidation
	err   error
	delay time.Duration
}

func (p *fakeIdP) revalidate(ctx context.Context, f *store.Family) (*Revalidation, error) {
	p.mu.Lock()
	p.calls++
	p.seen = append(p.seen, *f)
	res, err, delay := p.res, p.err, p.delay
	p.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	return res, err
}

func (p *fakeIdP) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// hookStore is the Badger store with hooks in front of some calls, to
// stop a request at a chosen point.
type hookStore struct {
	store.Store
	afterFamily        func(id string)
	beforeCreateToken  func(t *store.Token)
	beforeCreateFamily func(f *store.Family)
}

func (h *hookStore) Family(ctx context.Context, id string) (*store.Family, error) {
	f, err := h.Store.Family(ctx, id)
	if h.afterFamily != nil {
		h.afterFamily(id)
	}
	return f, err
}

func (h *hookStore) CreateToken(ctx context.Context, t *store.Token) error {
	if h.beforeCreateToken != nil {
		h.beforeCreateToken(t)
	}
	return h.Store.CreateToken(ctx, t)
}

func (h *hookStore) CreateFamily(ctx context.Context, f *store.Family) error {
	if h.beforeCreateFamily != nil {
		h.beforeCreateFamily(f)
	}
	return h.Store.CreateFamily(ctx, f)
}

// stopper holds callers at a hook until the test lets each one go.
type stopper struct{ arrived chan chan struct{} }

func newStopper() *stopper { return &stopper{arrived: make(chan chan struct{}, 16)} }

// stop is called from a hook: it waits until the test releases this call.
func (s *stopper) stop() {
	release := make(chan struct{})
	s.arrived <- release
	<-release
}

// next waits for a call to arrive at the hook and returns the function
// that lets it go on.
func (s *stopper) next(tb testing.TB) func() {
	tb.Helper()
	select {
	case release := <-s.arrived:
		return func() { close(release) }
	case <-time.After(10 * time.Second):
		tb.Fatal("no call reached the hook")
		return nil
	}
}

// result is the outcome of a call run in a goroutine; a panic is caught
// and reported as an error so that it fails one test, not the binary.
type result struct {
	pair *TokenPair
	err  error
}

func async(fn func() (*TokenPair, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- result{err: &panicError{r}}
			}
		}()
		p, err := fn()
		ch <- result{p, err}
	}()
	return ch
}

type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprint("panic: ", p.v) }

func recv(tb testing.TB, ch <-chan result) result {
	tb.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		tb.Fatal("the call did not return")
		return result{}
	}
}
