package token

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// OAuth errors (RFC 6749 §5.2 codes).
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidGrant         = "invalid_grant"
	ErrCodeInvalidClient        = "invalid_client"
	ErrCodeUnsupportedGrantType = "unsupported_grant_type"
)

// OAuthError is a token-endpoint refusal. Code is the RFC 6749 error code;
// Reason is for logs and metrics.
type OAuthError struct {
	Code        string
	Description string
	Reason      string
}

func (e *OAuthError) Error() string { return "oauth2: " + e.Code + ": " + e.Reason }

func grantError(reason, desc string) *OAuthError {
	return &OAuthError{Code: ErrCodeInvalidGrant, Description: desc, Reason: reason}
}

// Defaults for the OAuth 2 method.
const (
	DefaultOAuthAccessTTL = time.Hour
	DefaultRefreshTTL     = 90 * 24 * time.Hour
	DefaultRefreshGrace   = 60 * time.Second
	DefaultCodeTTL        = 60 * time.Second
	// OAuthFloor is the shortest access token lifetime with OAuth 2: enough
	// for sign-in → profile request; later expiries refresh silently.
	OAuthFloor = 5 * time.Minute
)

// Revalidator checks the family's user at the identity provider during a
// refresh. It returns a *Rejection when the provider refuses the user (the
// family is then revoked and its enrollment put in reauth), another error
// when the provider could not be asked (the refresh goes on and the check
// is tried again next time), or the provider's new (encrypted) refresh
// token to keep.
type Revalidator func(ctx context.Context, f *store.Family) (*Revalidation, error)

// Revalidation is a successful check at the identity provider.
type Revalidation struct {
	IdPRefresh []byte
	IdPKeyID   string
}

// OAuth issues and rotates tokens for apple-oauth2: single-use codes,
// refresh tokens that rotate on every use with reuse detection and a grace
// window, and token families that can be revoked whole.
type OAuth struct {
	// M issues access tokens (its Lifetime is the access token lifetime).
	M *Manager
	// Key derives a rotation's successor tokens from the presented refresh
	// token, so a retry within the grace window gets the same pair again
	// without the store ever holding a token. At least 32 bytes.
	Key []byte
	// KeyRef, when Key is nil, gives the key, loaded from the store on
	// first use (so a gateway on a remote store starts while it is down).
	KeyRef *store.SecretRef
	// RefreshTTL is the idle lifetime of a refresh token.
	RefreshTTL time.Duration
	// SignInEvery, when set, ends a family that long after its
	// interactive sign-in.
	SignInEvery time.Duration
	// Grace is how long a just-rotated refresh token still gets the same
	// successor pair.
	Grace time.Duration
	// CodeTTL bounds an authorization code's life.
	CodeTTL time.Duration
	// Revalidate, when set, checks the user at the identity provider on
	// refresh, at most once per RevalidateEvery per family (default 15
	// minutes) and one refresh at a time per family.
	Revalidate      Revalidator
	RevalidateEvery time.Duration
}

// DefaultRevalidateEvery is how often a family is checked at the provider.
const DefaultRevalidateEvery = 15 * time.Minute

// revalidationLease bounds how long one refresh may hold a family's
// identity-provider check.
const revalidationLease = 30 * time.Second

// TokenPair is a successful token response.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    int64
	// Access is the access token's record.
	Access *store.Token
	Family *store.Family
}

// CodeGrant is what a code stands for.
type CodeGrant struct {
	Grant
	ClientID, RedirectURI string
	CodeChallenge         string // PKCE S256 challenge, or ""
	EnrollmentID          string // the enrollment being re-authenticated, if any
	SignedInAt            time.Time
	IdPRefresh            []byte
	IdPKeyID              string
}

func (o *OAuth) now() time.Time { return o.M.now() }

func (o *OAuth) random(n int) ([]byte, error) {
	r := o.M.Rand
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("token: reading randomness: %w", err)
	}
	return b, nil
}

// NewCode mints an authorization code.
func (o *OAuth) NewCode(ctx context.Context, g CodeGrant) (string, error) {
	raw, h, err := Mint(o.M.Rand)
	if err != nil {
		return "", err
	}
	ttl := o.CodeTTL
	if ttl <= 0 {
		ttl = DefaultCodeTTL
	}
	c := &store.Code{
		Hash: h, ClientID: g.ClientID, RedirectURI: g.RedirectURI, CodeChallenge: g.CodeChallenge,
		Issuer: g.Issuer, Subject: g.Subject, SessionID: g.SessionID, UserIdentifier: g.UserIdentifier,
		ManagedAppleID: g.ManagedAppleID, Mode: g.Mode, ModelFamily: g.ModelFamily,
		EnrollmentID: g.EnrollmentID, SignedInAt: g.SignedInAt,
		Profile: g.Profile, RequiredAppID: g.RequiredAppID,
		IdPRefresh: g.IdPRefresh, IdPKeyID: g.IdPKeyID,
		ExpiresAt: o.now().Add(ttl),
	}
	if err := o.M.Store.CreateCode(ctx, c); err != nil {
		return "", err
	}
	return raw, nil
}

var errCodeReplay = errors.New("code replay")

// Exchange redeems an authorization code for a token pair. A code is used
// once: a second redemption revokes everything issued from it.
func (o *OAuth) Exchange(ctx context.Context, code, clientID, redirectURI, verifier string) (*TokenPair, error) {
	if !WellFormed(code) {
		return nil, grantError("malformed_code", "unknown authorization code")
	}
	if err := o.ready(ctx); err != nil {
		return nil, err
	}
	now := o.now()
	famID, err := o.familyID()
	if err != nil {
		return nil, err
	}
	var replayOf string
	c, err := o.M.Store.UpdateCode(ctx, HashOf(code), func(c *store.Code) error {
		replayOf = ""
		if !c.UsedAt.IsZero() {
			replayOf = c.FamilyID
			return errCodeReplay
		}
		c.UsedAt = now
		c.FamilyID = famID
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, grantError("unknown_code", "unknown authorization code")
	case errors.Is(err, errCodeReplay):
		if replayOf != "" {
			// The first redemption may not have stored its family yet:
			// take the id with a revoked family so that it cannot.
			tomb := &store.Family{ID: replayOf, RevokedAt: now, RevokeReason: "code_replay",
				ExpiresAt: now, CreatedAt: now, UpdatedAt: now}
			if cerr := o.M.Store.CreateFamily(ctx, tomb); cerr != nil && !errors.Is(cerr, store.ErrExists) {
				return nil, cerr
			}
			if rerr := o.RevokeFamily(ctx, replayOf, "code_replay"); rerr != nil {
				return nil, rerr
			}
		}
		return nil, grantError("code_replay", "authorization code already used")
	case err != nil:
		return nil, err
	}
	switch {
	case !now.Before(c.ExpiresAt):
		return nil, grantError("code_expired", "authorization code expired")
	case c.ClientID != clientID:
		return nil, grantError("client_mismatch", "code issued to another client")
	case c.RedirectURI != redirectURI:
		return nil, grantError("redirect_mismatch", "redirect_uri does not match the authorization request")
	case c.CodeChallenge != "":
		if verifier == "" || !pkceOK(verifier, c.CodeChallenge) {
			return nil, grantError("pkce_failed", "code_verifier does not match the code_challenge")
		}
	case verifier != "":
		// RFC 9700 §2.1.1: a verifier without a challenge is a downgrade.
		return nil, grantError("pkce_downgrade", "code_verifier sent, but the authorization request had no code_challenge")
	}
	refresh, err := o.newRefresh(famID)
	if err != nil {
		return nil, err
	}
	salt, err := o.random(saltLen)
	if err != nil {
		return nil, err
	}
	f := &store.Family{
		ID: famID, Issuer: c.Issuer, Subject: c.Subject, SessionID: c.SessionID,
		UserIdentifier: c.UserIdentifier, ManagedAppleID: c.ManagedAppleID, Mode: c.Mode,
		ModelFamily: c.ModelFamily, ClientID: c.ClientID,
		Profile: c.Profile, RequiredAppID: c.RequiredAppID,
		EnrollmentID: c.EnrollmentID,
		SignedInAt:   c.SignedInAt, RefreshHash: HashOf(refresh), ExpiresAt: now.Add(o.refreshTTL()),
		IdPRefresh: c.IdPRefresh, IdPKeyID: c.IdPKeyID, RevalidatedAt: now,
		CreatedAt: now, UpdatedAt: now, Salt: salt,
	}
	if f.SignedInAt.IsZero() {
		f.SignedInAt = now
	}
	if err := o.M.Store.CreateFamily(ctx, f); errors.Is(err, store.ErrExists) {
		// A concurrent replay of the code got there first.
		return nil, grantError("code_replay", "authorization code already used")
	} else if err != nil {
		return nil, err
	}
	access, _, err := Mint(o.M.Rand)
	if err != nil {
		return nil, err
	}
	t, err := o.createAccess(ctx, access, f)
	if err != nil {
		return nil, err
	}
	return &TokenPair{AccessToken: access, RefreshToken: refresh, ExpiresIn: expiresIn(t, now), Access: t, Family: f}, nil
}

func (o *OAuth) refreshTTL() time.Duration {
	if o.RefreshTTL > 0 {
		return o.RefreshTTL
	}
	return DefaultRefreshTTL
}

func (o *OAuth) grace() time.Duration {
	if o.Grace > 0 {
		return o.Grace
	}
	return DefaultRefreshGrace
}

func (o *OAuth) familyID() (string, error) {
	b, err := o.random(12)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// A refresh token is "<family id>.<secret>.<tag>": the tag, a MAC of the
// rest under Key, lets a made-up token under a real family id be refused as
// unknown instead of being taken for a reused one (which would revoke the
// family).
func (o *OAuth) newRefresh(famID string) (string, error) {
	b, err := o.random(Size)
	if err != nil {
		return "", err
	}
	return o.tagged(famID + "." + base64.RawURLEncoding.EncodeToString(b)), nil
}

const tagLen = 16

// ready makes sure the rotation key is there (loading KeyRef's) before a
// grant uses it.
func (o *OAuth) ready(ctx context.Context) error {
	if o.Key == nil && o.KeyRef != nil {
		if _, err := o.KeyRef.Get(ctx); err != nil {
			return fmt.Errorf("token: loading the rotation key: %w", err)
		}
	}
	if len(o.k()) < 32 {
		return errors.New("token: the rotation key is missing or too short")
	}
	return nil
}

// k is the rotation key: Key, else KeyRef's once loaded.
func (o *OAuth) k() []byte {
	if o.Key != nil || o.KeyRef == nil {
		return o.Key
	}
	return o.KeyRef.Loaded()
}

func (o *OAuth) tag(body string) []byte {
	m := hmac.New(sha256.New, o.k())
	m.Write([]byte("mdmauth-oauth2-refresh-tag\x00"))
	m.Write([]byte(body))
	return m.Sum(nil)[:tagLen]
}

func (o *OAuth) tagged(body string) string {
	return body + "." + base64.RawURLEncoding.EncodeToString(o.tag(body))
}

// checkTag verifies a refresh token's tag and returns its family id.
func (o *OAuth) checkTag(s string) (string, bool) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", false
	}
	body, tag := s[:i], s[i+1:]
	famID, ok := parseRefresh(body)
	if !ok {
		return "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(tag)
	if err != nil || !hmac.Equal(got, o.tag(body)) {
		return "", false
	}
	return famID, true
}

// saltLen is the length of a family's per-rotation salt.
const saltLen = 16

// successors derives the access and refresh tokens that replace refresh,
// under the family's salt of that rotation. Deriving them (rather than
// drawing them at random) gives a retry, or a concurrent refresh on another
// gateway, the same pair; the salt, renewed at each rotation, keeps the key
// and one refresh token from deriving the family's later tokens.
func (o *OAuth) successors(famID, refresh string, salt []byte) (access, next string) {
	m := hmac.New(sha256.New, o.k())
	m.Write([]byte("mdmauth-oauth2-access\x00"))
	m.Write(salt)
	m.Write([]byte(refresh))
	access = base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	m = hmac.New(sha256.New, o.k())
	m.Write([]byte("mdmauth-oauth2-refresh\x00"))
	m.Write(salt)
	m.Write([]byte(refresh))
	next = o.tagged(famID + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
	return access, next
}

func parseRefresh(s string) (famID string, ok bool) {
	id, secret, found := strings.Cut(s, ".")
	if !found || len(id) != 16 || !WellFormed(secret) {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return id, true
}

func (o *OAuth) createAccess(ctx context.Context, raw string, f *store.Family) (*store.Token, error) {
	now := o.now()
	exp, err := o.M.Lifetime.Expiry(now, o.M.Rand)
	if err != nil {
		return nil, err
	}
	t := &store.Token{
		Hash: HashOf(raw), Issuer: f.Issuer, Subject: f.Subject, SessionID: f.SessionID,
		UserIdentifier: f.UserIdentifier, ManagedAppleID: f.ManagedAppleID, Mode: f.Mode,
		ModelFamily: f.ModelFamily, IssuedAt: now, ExpiresAt: exp,
		Profile: f.Profile, RequiredAppID: f.RequiredAppID,
		EnrollmentID: f.EnrollmentID, FamilyID: f.ID,
	}
	if err := o.M.Store.CreateToken(ctx, t); err != nil {
		return nil, err
	}
	// RevokeFamily marks the family, then revokes the tokens it lists: a
	// token stored after that listing is caught here.
	cur, err := o.M.Store.Family(ctx, f.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err == nil && !cur.RevokedAt.IsZero() {
		if err := o.M.Revoke(ctx, t.Hash); err != nil {
			return nil, err
		}
		return nil, grantError("family_revoked", "refresh token revoked")
	}
	return t, nil
}

func expiresIn(t *store.Token, now time.Time) int64 {
	s := int64(t.ExpiresAt.Sub(now) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

var (
	errReuse   = errors.New("refresh token reuse")
	errGraceOK = errors.New("within grace")
)

// Refresh rotates a refresh token: the presented token is replaced by a new
// one and a new access token. Presenting a replaced token revokes the whole
// family — except within the grace window, where it gets the same
// successor pair again (a lost response, or two refreshes at once).
func (o *OAuth) Refresh(ctx context.Context, refresh, clientID string) (*TokenPair, error) {
	if err := o.ready(ctx); err != nil {
		return nil, err
	}
	famID, ok := o.checkTag(refresh)
	if !ok {
		return nil, grantError("malformed_refresh", "unknown refresh token")
	}
	f, err := o.M.Store.Family(ctx, famID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, grantError("unknown_family", "unknown refresh token")
	}
	if err != nil {
		return nil, err
	}
	h := HashOf(refresh)
	now := o.now()
	if !f.RevokedAt.IsZero() {
		return nil, grantError("family_revoked", "refresh token revoked")
	}
	if subtle.ConstantTimeCompare([]byte(f.ClientID), []byte(clientID)) != 1 {
		return nil, grantError("client_mismatch", "refresh token issued to another client")
	}
	if !SameHash(f.RefreshHash, h) {
		return o.retryOrReuse(ctx, f, h, refresh, now)
	}
	access, next := o.successors(famID, refresh, f.Salt)
	if !now.Before(f.ExpiresAt) {
		return nil, grantError("refresh_expired", "refresh token expired")
	}
	if o.SignInEvery > 0 && !now.Before(f.SignedInAt.Add(o.SignInEvery)) {
		return nil, grantError("sign_in_required", "interactive sign-in required")
	}
	if f.EnrollmentID != "" {
		e, err := o.M.Store.Enrollment(ctx, f.EnrollmentID)
		switch {
		case err == nil && e.State != store.StateActive:
			return nil, grantError("enrollment_"+string(e.State), "the enrollment needs a new sign-in")
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	if o.Revalidate != nil {
		if err := o.revalidate(ctx, famID); err != nil {
			return nil, err
		}
	}
	nh := HashOf(next)
	salt, err := o.random(saltLen)
	if err != nil {
		return nil, err
	}
	var rotated store.Family // the family as a concurrent refresh left it
	f, err = o.M.Store.UpdateFamily(ctx, famID, func(f *store.Family) error {
		switch {
		case !f.RevokedAt.IsZero():
			return grantError("family_revoked", "refresh token revoked")
		case SameHash(f.RefreshHash, nh) && SameHash(f.PreviousHash, h):
			rotated = *f
			return errGraceOK // a concurrent refresh rotated it just now
		case !SameHash(f.RefreshHash, h):
			return errReuse
		}
		f.PreviousHash, f.RefreshHash = h, nh
		f.PreviousSalt, f.Salt = f.Salt, salt
		f.RotatedAt = now
		f.Generation++
		f.ExpiresAt = now.Add(o.refreshTTL())
		f.UpdatedAt = now
		return nil
	})
	switch {
	case errors.Is(err, errGraceOK):
		return o.sameSuccessors(ctx, &rotated, access, next, now)
	case errors.Is(err, errReuse):
		return nil, o.reuse(ctx, famID)
	case err != nil:
		return nil, err
	}
	t, err := o.createAccess(ctx, access, f)
	if errors.Is(err, store.ErrExists) {
		return o.sameSuccessors(ctx, f, access, next, now)
	}
	if err != nil {
		return nil, err
	}
	return &TokenPair{AccessToken: access, RefreshToken: next, ExpiresIn: expiresIn(t, now), Access: t, Family: f}, nil
}

func (o *OAuth) retryOrReuse(ctx context.Context, f *store.Family, h store.Hash, refresh string, now time.Time) (*TokenPair, error) {
	access, next := o.successors(f.ID, refresh, f.PreviousSalt)
	if SameHash(f.PreviousHash, h) && SameHash(f.RefreshHash, HashOf(next)) && now.Sub(f.RotatedAt) <= o.grace() {
		return o.sameSuccessors(ctx, f, access, next, now)
	}
	return nil, o.reuse(ctx, f.ID)
}

// sameSuccessors answers a retry within the grace window with the pair the
// first rotation issued.
func (o *OAuth) sameSuccessors(ctx context.Context, f *store.Family, access, next string, now time.Time) (*TokenPair, error) {
	t, err := o.M.Store.Token(ctx, HashOf(access))
	if errors.Is(err, store.ErrNotFound) {
		// The first attempt rotated the family but failed before storing
		// the access token: store it now.
		t, err = o.createAccess(ctx, access, f)
		if errors.Is(err, store.ErrExists) {
			// Another retry stored it first.
			t, err = o.M.Store.Token(ctx, HashOf(access))
		}
	}
	if err != nil {
		return nil, err
	}
	if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
		return nil, grantError("family_revoked", "refresh token revoked")
	}
	return &TokenPair{AccessToken: access, RefreshToken: next, ExpiresIn: expiresIn(t, now), Access: t, Family: f}, nil
}

func (o *OAuth) reuse(ctx context.Context, famID string) error {
	if err := o.RevokeFamily(ctx, famID, "refresh_reuse"); err != nil {
		return err
	}
	return grantError("refresh_reuse", "refresh token already used")
}

// revalidate asks the identity provider when the family's last check is
// older than RevalidateEvery. A lease in the family record makes sure only
// one refresh (on any gateway) talks to the provider for a family at a
// time, so a rotating provider refresh token is never used twice.
func (o *OAuth) revalidate(ctx context.Context, famID string) error {
	every := o.RevalidateEvery
	if every <= 0 {
		every = DefaultRevalidateEvery
	}
	now := o.now()
	due := false
	f, err := o.M.Store.UpdateFamily(ctx, famID, func(f *store.Family) error {
		due = false
		if now.Sub(f.RevalidatedAt) < every || now.Before(f.RevalidatingUntil) {
			return nil
		}
		due = true
		f.RevalidatingUntil = now.Add(revalidationLease)
		return nil
	})
	if err != nil {
		return err
	}
	if !due {
		// Checked recently, or another refresh is checking right now: its
		// outcome (a revocation) reaches this family's next request.
		return nil
	}
	res, rerr := o.Revalidate(ctx, f)
	if ReasonOf(rerr) != "" {
		if err := o.RevokeFamily(ctx, famID, "idp_refused"); err != nil {
			return err
		}
		if f.EnrollmentID != "" {
			if _, err := o.M.SetState(ctx, f.EnrollmentID, store.StateReauth, time.Time{}); err != nil && !errors.Is(err, ErrTransition) && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return grantError("idp_refused", "the identity provider refused the user")
	}
	_, err = o.M.Store.UpdateFamily(ctx, famID, func(f *store.Family) error {
		f.RevalidatingUntil = time.Time{}
		if rerr == nil {
			f.RevalidatedAt = now
			if res != nil && len(res.IdPRefresh) > 0 {
				f.IdPRefresh, f.IdPKeyID = res.IdPRefresh, res.IdPKeyID
			}
		}
		return nil
	})
	return err // provider unreachable: the refresh goes on
}

// RevokeFamily revokes a family and every access token issued in it.
func (o *OAuth) RevokeFamily(ctx context.Context, id, reason string) error {
	now := o.now()
	_, err := o.M.Store.UpdateFamily(ctx, id, func(f *store.Family) error {
		if f.RevokedAt.IsZero() {
			f.RevokedAt = now
			f.RevokeReason = reason
			f.UpdatedAt = now
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	toks, err := o.M.Store.TokensForFamily(ctx, id)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := o.M.Revoke(ctx, t.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ { // RFC 7636 §4.1: unreserved characters
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
