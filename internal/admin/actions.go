package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// action is what an operator can do to an enrollment.
type action struct {
	// to is the new state; "" changes no state (revoke).
	to store.State
	// from, when set, is the only state the action applies to.
	from store.State
	// families revokes the enrollment's OAuth 2 token families, so that
	// a refresh cannot issue for it again; tokens also revokes the tokens
	// bound to it. For a user, every token and family of the user is
	// revoked unless keep is set.
	families, tokens bool
	keep             bool
}

// actions by name. A blocked device must not get tokens by refreshing,
// now or after it is unblocked and its user signed in again: block and
// remove revoke everything the enrollment holds. reauth and offboard
// revoke the families too: the device signs in anew (reauth) or leaves
// (offboard, where MDM traffic passes without a token anyway), and its
// old refresh token must not outlive that.
var actions = map[string]*action{
	"reauth":   {to: store.StateReauth, families: true},
	"block":    {to: store.StateBlocked, families: true, tokens: true},
	"offboard": {to: store.StateOffboarding, families: true},
	"unblock":  {to: store.StateReauth, from: store.StateBlocked, keep: true},
	"remove":   {to: store.StateRemoved, families: true, tokens: true},
	"revoke":   {families: true, tokens: true},
}

// ActionRequest is the optional body of an enrollment action and the body
// of a user action (which needs iss and sub). Deadline (RFC 3339) or
// Within (a Go duration such as "72h") set the offboarding deadline;
// without either it is DefaultOffboardWithin from now.
type ActionRequest struct {
	Issuer   string `json:"iss,omitempty"`
	Subject  string `json:"sub,omitempty"`
	Deadline string `json:"deadline,omitempty"`
	Within   string `json:"within,omitempty"`
}

// deadline returns the offboarding deadline the request asks for.
func (a *ActionRequest) deadline(name string, now time.Time) (time.Time, error) {
	if name != "offboard" {
		if a.Deadline != "" || a.Within != "" {
			return time.Time{}, badRequest("deadline and within apply to offboard only")
		}
		return time.Time{}, nil
	}
	switch {
	case a.Deadline != "" && a.Within != "":
		return time.Time{}, badRequest("give deadline or within, not both")
	case a.Deadline != "":
		t, err := time.Parse(time.RFC3339, a.Deadline)
		if err != nil {
			return time.Time{}, badRequest("deadline must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
		}
		if !t.After(now) {
			return time.Time{}, badRequest("deadline %s has passed", a.Deadline)
		}
		return t, nil
	case a.Within != "":
		d, err := time.ParseDuration(a.Within)
		if err != nil || d <= 0 {
			return time.Time{}, badRequest("within must be a positive duration such as 72h")
		}
		return now.Add(d), nil
	}
	return now.Add(DefaultOffboardWithin), nil
}

// readAction reads the request of action name (which takes no query
// parameters) and the offboarding deadline it asks for. The body of a user
// action is required and names the user by iss and sub; that of an
// enrollment action is optional and must not.
func (c *call) readAction(name string, user bool) (ActionRequest, time.Time, error) {
	var req ActionRequest
	if _, err := c.query(); err != nil {
		return req, time.Time{}, err
	}
	if err := c.readJSON(&req, user); err != nil {
		return req, time.Time{}, err
	}
	switch {
	case user && (req.Issuer == "" || req.Subject == ""):
		return req, time.Time{}, badRequest("iss and sub are required")
	case !user && (req.Issuer != "" || req.Subject != ""):
		return req, time.Time{}, badRequest("iss and sub belong to users/%s", name)
	}
	deadline, err := req.deadline(name, c.h.now())
	return req, deadline, err
}

// ActionResult is the answer of an enrollment action.
type ActionResult struct {
	Enrollment    Enrollment  `json:"enrollment"`
	PreviousState store.State `json:"previous_state"`
	Revoked
}

// enrollmentAction: POST enrollments/{id}/{reauth|block|offboard|unblock|remove|revoke}
func (c *call) enrollmentAction(args []string) {
	id, name := args[0], args[1]
	act := actions[name]
	_, deadline, err := c.readAction(name, false)
	if c.clientError(err) {
		return
	}
	ctx, cancel := c.changeContext()
	defer cancel()
	e0, err := c.st.Enrollment(ctx, id)
	if err != nil {
		c.storeError("enrollment", err)
		return
	}
	if act.to == "" {
		n, err := c.revokeEnrollment(ctx, e0, act.tokens)
		if err != nil {
			c.storeError("enrollment", err)
			return
		}
		c.audit("tokens revoked", audit.AdminGrantsRevoked, zap.String("action", name), zap.String("enrollment_id", id), zap.String("iss", e0.Issuer),
			zap.String("sub", e0.Subject), zap.Int("tokens_revoked", n.Tokens), zap.Int("families_revoked", n.Families))
		c.json(http.StatusOK, ActionResult{Enrollment: enrollmentView(e0), PreviousState: e0.State, Revoked: n})
		return
	}
	if err := act.check(e0.State); err != nil {
		c.fail(http.StatusConflict, "%v", err)
		return
	}
	e, n, err := c.apply(ctx, e0, name, act, deadline)
	if err != nil {
		c.storeError("enrollment", err)
		return
	}
	c.json(http.StatusOK, ActionResult{Enrollment: enrollmentView(e), PreviousState: e0.State, Revoked: n})
}

// check refuses an action the enrollment's state does not allow.
func (a *action) check(from store.State) error {
	if a.from != "" && from != a.from {
		return fmt.Errorf("%w: the enrollment is %s, not %s", token.ErrTransition, from, a.from)
	}
	if !token.CanTransition(from, a.to) {
		return fmt.Errorf("%w: %s → %s", token.ErrTransition, from, a.to)
	}
	return nil
}

// apply moves e0 to the action's state, revokes what the action revokes
// and logs the change.
func (c *call) apply(ctx context.Context, e0 *store.Enrollment, name string, act *action, deadline time.Time) (*store.Enrollment, Revoked, error) {
	var n Revoked
	from := e0.State
	// Check and change in one step (the state machine is the token
	// package's), so that an action never applies to a state the
	// enrollment left meanwhile; revocations follow, counted.
	now := c.h.now()
	e, err := c.st.UpdateEnrollment(ctx, e0.ID, func(cur *store.Enrollment) (*store.Enrollment, error) {
		if cur == nil {
			return nil, store.ErrNotFound
		}
		if err := act.check(cur.State); err != nil {
			return nil, err
		}
		from = cur.State
		cur.State, cur.Deadline, cur.UpdatedAt = act.to, time.Time{}, now
		if act.to == store.StateOffboarding {
			cur.Deadline = deadline
		}
		return cur, nil
	})
	if err != nil {
		return nil, n, err
	}
	if act.families {
		if n, err = c.revokeEnrollment(ctx, e, act.tokens); err != nil {
			return e, n, err
		}
	}
	fields := []zap.Field{zap.String("enrollment_id", e.ID), zap.String("action", name),
		zap.String("from", string(from)), zap.String("to", string(e.State)),
		zap.String("iss", e.Issuer), zap.String("sub", e.Subject), zap.String("managed_apple_id", e.ManagedAppleID),
		zap.String("mode", e.Mode), zap.Int("tokens_revoked", n.Tokens), zap.Int("families_revoked", n.Families)}
	if !e.Deadline.IsZero() {
		fields = append(fields, zap.Time("deadline", e.Deadline))
	}
	c.audit("enrollment state changed", audit.AdminStateChanged, fields...)
	return e, n, nil
}

// UserResult is the answer of a user action.
type UserResult struct {
	Issuer      string              `json:"iss"`
	Subject     string              `json:"sub"`
	Action      string              `json:"action"`
	Enrollments []EnrollmentOutcome `json:"enrollments"`
	Changed     int                 `json:"changed"`
	Unchanged   int                 `json:"unchanged"`
	Errors      int                 `json:"errors"`
	Revoked
}

// Outcomes of one enrollment in a user action.
const (
	OutcomeChanged   = "changed"
	OutcomeUnchanged = "unchanged"
	OutcomeError     = "error"
)

// EnrollmentOutcome is what a user action did to one enrollment.
type EnrollmentOutcome struct {
	ID            string      `json:"id"`
	PreviousState store.State `json:"previous_state"`
	State         store.State `json:"state"`
	Result        string      `json:"result"`
	Error         string      `json:"error,omitempty"`
}

// userAction: POST users/{action} {"iss":…, "sub":…}. Enrollments already
// in the target state, removed ones, and (for unblock) those not blocked
// are left unchanged; a transition the state machine forbids is an error
// for that enrollment only. Except for unblock, every token and OAuth 2
// family of the user is then revoked, bound to an enrollment or not (a
// device in the middle of enrolling included).
func (c *call) userAction(args []string) {
	name := args[0]
	act := actions[name]
	req, deadline, err := c.readAction(name, true)
	if c.clientError(err) {
		return
	}
	ctx, cancel := c.changeContext()
	defer cancel()
	enrs, err := c.st.EnrollmentsForUser(ctx, req.Issuer, req.Subject)
	if err != nil {
		c.storeError("user", err)
		return
	}
	if len(enrs) == 0 {
		toks, err1 := c.st.TokensForUser(ctx, req.Issuer, req.Subject)
		fams, err2 := c.st.FamiliesForUser(ctx, req.Issuer, req.Subject)
		if err := errors.Join(err1, err2); err != nil {
			c.storeError("user", err)
			return
		}
		if len(toks) == 0 && len(fams) == 0 {
			c.fail(http.StatusNotFound, "no enrollments or tokens for that user")
			return
		}
	}
	slices.SortFunc(enrs, func(a, b *store.Enrollment) int { return cmp.Compare(a.ID, b.ID) })
	res := UserResult{Issuer: req.Issuer, Subject: req.Subject, Action: name, Enrollments: []EnrollmentOutcome{}}
	for _, e0 := range enrs {
		o := EnrollmentOutcome{ID: e0.ID, PreviousState: e0.State, State: e0.State, Result: OutcomeUnchanged}
		switch {
		case act.to == "", e0.State == act.to, e0.State == store.StateRemoved, act.from != "" && e0.State != act.from:
		default:
			e, n, err := c.apply(ctx, e0, name, act, deadline)
			res.Revoked.add(n)
			switch {
			case err == nil:
				o.State, o.Result = e.State, OutcomeChanged
			case errors.Is(err, token.ErrTransition):
				o.Result, o.Error = OutcomeError, err.Error()
			case errors.Is(err, store.ErrNotFound):
				o.Result, o.Error = OutcomeError, "enrollment not found"
			default:
				c.storeError("enrollment", err)
				return
			}
		}
		switch o.Result {
		case OutcomeChanged:
			res.Changed++
		case OutcomeUnchanged:
			res.Unchanged++
		default:
			res.Errors++
		}
		res.Enrollments = append(res.Enrollments, o)
	}
	if !act.keep {
		n, err := c.revokeUser(ctx, req.Issuer, req.Subject)
		if err != nil {
			c.storeError("user", err)
			return
		}
		res.Revoked.add(n)
		c.audit("user tokens revoked", audit.AdminGrantsRevoked, zap.String("action", name),
			zap.String("iss", req.Issuer), zap.String("sub", req.Subject),
			zap.Int("tokens_revoked", n.Tokens), zap.Int("families_revoked", n.Families))
	}
	c.json(http.StatusOK, res)
}
