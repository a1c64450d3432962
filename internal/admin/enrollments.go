package admin

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"

	"github.com/mdmauth/mdmauth/internal/store"
)

// EnrollmentList is the answer of GET enrollments.
type EnrollmentList struct {
	Enrollments []Enrollment `json:"enrollments"`
	// NextCursor, when set, fetches the next page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// EnrollmentDetail is the answer of GET enrollments/{id}.
type EnrollmentDetail struct {
	Enrollment Enrollment `json:"enrollment"`
	Tokens     []Token    `json:"tokens"`
	Families   []Family   `json:"families"`
}

// Cursors are the key the next page starts at, base64url-encoded with a
// letter naming what they page through.
func encodeCursor(kind byte, key []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, key...))
}

func decodeCursor(kind byte, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != kind {
		return nil, badRequest("invalid cursor")
	}
	return b[1:], nil
}

const (
	cursorEnrollment = 'e'
	cursorToken      = 't'
)

// enrollmentFilter holds the list filters other than the user.
type enrollmentFilter struct {
	managedAppleID, mode string
	state                store.State
}

func (f enrollmentFilter) match(e *store.Enrollment) bool {
	return (f.managedAppleID == "" || strings.EqualFold(e.ManagedAppleID, f.managedAppleID)) &&
		(f.mode == "" || e.Mode == f.mode) &&
		(f.state == "" || e.State == f.state)
}

// listEnrollments: GET enrollments?iss=&sub=&managed_apple_id=&mode=&state=&limit=&cursor=
func (c *call) listEnrollments(_ []string) {
	q, err := c.query("iss", "sub", "managed_apple_id", "mode", "state", "limit", "cursor")
	if c.clientError(err) {
		return
	}
	var f enrollmentFilter
	iss, sub, err := q.user()
	if c.clientError(err) {
		return
	}
	f.managedAppleID = q.get("managed_apple_id")
	if f.mode, err = q.mode(); c.clientError(err) {
		return
	}
	if s := q.get("state"); s != "" {
		if f.state, err = parseState(s); c.clientError(err) {
			return
		}
	}
	limit, from, err := q.page(cursorEnrollment)
	if c.clientError(err) {
		return
	}
	ctx := c.r.Context()
	out := EnrollmentList{Enrollments: []Enrollment{}}
	add := func(e *store.Enrollment) bool {
		if string(from) > e.ID || !f.match(e) {
			return true
		}
		if len(out.Enrollments) == limit {
			out.NextCursor = encodeCursor(cursorEnrollment, []byte(e.ID))
			return false
		}
		out.Enrollments = append(out.Enrollments, enrollmentView(e))
		return true
	}
	if iss != "" {
		list, err := c.st.EnrollmentsForUser(ctx, iss, sub)
		if err != nil {
			c.storeError("user", err)
			return
		}
		slices.SortFunc(list, func(a, b *store.Enrollment) int { return strings.Compare(a.ID, b.ID) })
		for _, e := range list {
			if !add(e) {
				break
			}
		}
	} else if err := c.st.ScanEnrollments(ctx, string(from), add); err != nil {
		c.storeError("enrollments", err)
		return
	}
	c.json(http.StatusOK, out)
}

// showEnrollment: GET enrollments/{id}
func (c *call) showEnrollment(args []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	ctx := c.r.Context()
	e, err := c.st.Enrollment(ctx, args[0])
	if err != nil {
		c.storeError("enrollment", err)
		return
	}
	toks, fams, err := enrollmentGrants(ctx, c.st, e)
	if err != nil {
		c.storeError("enrollment", err)
		return
	}
	now := c.h.now()
	out := EnrollmentDetail{Enrollment: enrollmentView(e), Tokens: []Token{}, Families: []Family{}}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, tokenView(t, now))
	}
	for _, f := range fams {
		out.Families = append(out.Families, familyView(f, now))
	}
	c.json(http.StatusOK, out)
}
