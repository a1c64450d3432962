package admin

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
)

// TokenList is the answer of GET tokens.
type TokenList struct {
	Tokens     []Token `json:"tokens"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// TokenDetail is the answer of GET tokens/{token_id}: the token and, for
// an OAuth 2 token, its family.
type TokenDetail struct {
	Token  Token   `json:"token"`
	Family *Family `json:"family,omitempty"`
}

// RevokeResult is the answer of POST tokens/{token_id}/revoke.
type RevokeResult struct {
	Token  Token   `json:"token"`
	Family *Family `json:"family,omitempty"`
	Revoked
}

// idLen is the length of a token id in bytes.
const idLen = 12

// tokenFilter holds the token list filters other than the user and the
// enrollment.
type tokenFilter struct {
	managedAppleID, mode, enrollmentID string
	live                               *bool
	now                                time.Time
}

func (f tokenFilter) match(t *store.Token) bool {
	if f.live != nil && (grantState(t.RevokedAt, t.ExpiresAt, f.now) == TokenLive) != *f.live {
		return false
	}
	return (f.managedAppleID == "" || strings.EqualFold(t.ManagedAppleID, f.managedAppleID)) &&
		(f.mode == "" || t.Mode == f.mode) &&
		(f.enrollmentID == "" || t.EnrollmentID == f.enrollmentID)
}

// listTokens: GET tokens?iss=&sub=&enrollment_id=&managed_apple_id=&mode=&live=&limit=&cursor=
func (c *call) listTokens(_ []string) {
	q, err := c.query("iss", "sub", "enrollment_id", "managed_apple_id", "mode", "live", "limit", "cursor")
	if c.clientError(err) {
		return
	}
	iss, sub, err := q.user()
	if c.clientError(err) {
		return
	}
	f := tokenFilter{managedAppleID: q.get("managed_apple_id"), enrollmentID: q.get("enrollment_id"), now: c.h.now()}
	if f.mode, err = q.mode(); c.clientError(err) {
		return
	}
	switch q.get("live") {
	case "":
	case "true", "false":
		live := q.get("live") == "true"
		f.live = &live
	default:
		c.fail(http.StatusBadRequest, "live must be true or false")
		return
	}
	limit, from, err := q.page(cursorToken)
	if c.clientError(err) {
		return
	}
	if len(from) > len(store.Hash{}) {
		c.fail(http.StatusBadRequest, "invalid cursor")
		return
	}
	ctx := c.r.Context()
	out := TokenList{Tokens: []Token{}}
	add := func(t *store.Token) bool {
		if bytes.Compare(t.Hash[:], from) < 0 || !f.match(t) {
			return true
		}
		if len(out.Tokens) == limit {
			// The next page starts at this token's id, a prefix of its
			// hash: the cursor never holds a whole hash.
			out.NextCursor = encodeCursor(cursorToken, t.Hash[:idLen])
			return false
		}
		out.Tokens = append(out.Tokens, tokenView(t, f.now))
		return true
	}
	var list []*store.Token
	switch {
	case iss != "":
		list, err = c.st.TokensForUser(ctx, iss, sub)
	case f.enrollmentID != "":
		list, err = c.st.TokensForEnrollment(ctx, f.enrollmentID)
	default:
		err = c.st.ScanTokens(ctx, from, add)
	}
	if err != nil {
		c.storeError("tokens", err)
		return
	}
	if list != nil {
		slices.SortFunc(list, func(a, b *store.Token) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
		for _, t := range list {
			if !add(t) {
				break
			}
		}
	}
	c.json(http.StatusOK, out)
}

// findToken returns the token with the given id, or store.ErrNotFound.
func (c *call) findToken(id string) (*store.Token, error) {
	id = strings.ToLower(id)
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != idLen {
		return nil, badRequest("a token id is %d hex digits", 2*idLen)
	}
	var found *store.Token
	err = c.st.ScanTokens(c.r.Context(), b, func(t *store.Token) bool {
		if t.Hash.ID() == id {
			found = t
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, store.ErrNotFound
	}
	return found, nil
}

// tokenArg returns the token with the given id; when there is none, or
// the id is malformed, it answers the error and reports false.
func (c *call) tokenArg(id string) (*store.Token, bool) {
	t, err := c.findToken(id)
	if c.clientError(err) {
		return nil, false
	}
	if err != nil {
		c.storeError("token", err)
		return nil, false
	}
	return t, true
}

// tokenFamily returns the view of t's family, nil if it has none on
// record; when the store fails, it answers the error and reports false.
func (c *call) tokenFamily(t *store.Token) (*Family, bool) {
	if t.FamilyID == "" {
		return nil, true
	}
	f, err := c.st.Family(c.r.Context(), t.FamilyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, true
	}
	if err != nil {
		c.storeError("token family", err)
		return nil, false
	}
	v := familyView(f, c.h.now())
	return &v, true
}

// showToken: GET tokens/{token_id}
func (c *call) showToken(args []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	t, ok := c.tokenArg(args[0])
	if !ok {
		return
	}
	fam, ok := c.tokenFamily(t)
	if !ok {
		return
	}
	c.json(http.StatusOK, TokenDetail{Token: tokenView(t, c.h.now()), Family: fam})
}

// revokeToken: POST tokens/{token_id}/revoke. An OAuth 2 token's family is
// revoked with it, or the next refresh would hand the device a new one.
func (c *call) revokeToken(args []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	var none struct{}
	if err := c.readJSON(&none, false); c.clientError(err) {
		return
	}
	t, ok := c.tokenArg(args[0])
	if !ok {
		return
	}
	ctx, cancel := c.changeContext()
	defer cancel()
	var (
		n   Revoked
		err error
	)
	if t.FamilyID != "" {
		err = c.revokeFamily(ctx, t.FamilyID, &n)
	}
	if err == nil {
		err = c.revokeTokenHash(ctx, t.Hash, &n)
	}
	if err != nil {
		c.storeError("token", err)
		return
	}
	if t, err = c.st.Token(ctx, t.Hash); err != nil {
		c.storeError("token", err)
		return
	}
	fam, ok := c.tokenFamily(t)
	if !ok {
		return
	}
	c.audit("token revoked", audit.AdminTokenRevoked, zap.String("token_id", t.Hash.ID()), zap.String("family_id", t.FamilyID),
		zap.String("enrollment_id", t.EnrollmentID), zap.String("iss", t.Issuer), zap.String("sub", t.Subject),
		zap.Int("tokens_revoked", n.Tokens), zap.Int("families_revoked", n.Families))
	c.json(http.StatusOK, RevokeResult{Token: tokenView(t, c.h.now()), Family: fam, Revoked: n})
}
