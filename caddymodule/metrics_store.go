package caddymodule

import (
	"context"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// storeOps are the op label values of mdm_auth_store_operation_duration_seconds.
var storeOps = []string{
	"create_token", "token", "update_token",
	"enrollment", "update_enrollment", "bind", "lookup", "tokens_for_enrollment", "enrollments_for_user",
	"put_login_state", "take_login_state",
	"secret",
	"create_code", "update_code", "create_family", "family", "update_family", "tokens_for_family",
	"scan_enrollments", "scan_tokens", "scan_families", "count_login_states", "tokens_for_user", "families_for_user", "size",
	"ping", "close",
}

// timedStore times every call into the store latency histogram. It embeds
// the store, so a method added to store.Store later is still forwarded
// (untimed until it is added here; a test reports it).
type timedStore struct {
	store.Store
	m *metrics
}

func (m *metrics) timeStore(s store.Store) store.Store { return timedStore{Store: s, m: m} }

func (s timedStore) since(op string, start time.Time) {
	d := time.Since(start).Seconds()
	if o, ok := s.m.storeObs[op]; ok {
		o.Observe(d)
		return
	}
	s.m.storeOps.WithLabelValues(op).Observe(d)
}

func (s timedStore) CreateToken(ctx context.Context, t *store.Token) error {
	defer s.since("create_token", time.Now())
	return s.Store.CreateToken(ctx, t)
}

func (s timedStore) Token(ctx context.Context, h store.Hash) (*store.Token, error) {
	defer s.since("token", time.Now())
	return s.Store.Token(ctx, h)
}

func (s timedStore) UpdateToken(ctx context.Context, h store.Hash, fn func(*store.Token) error) (*store.Token, error) {
	defer s.since("update_token", time.Now())
	return s.Store.UpdateToken(ctx, h, fn)
}

func (s timedStore) Enrollment(ctx context.Context, id string) (*store.Enrollment, error) {
	defer s.since("enrollment", time.Now())
	return s.Store.Enrollment(ctx, id)
}

func (s timedStore) UpdateEnrollment(ctx context.Context, id string, fn func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	defer s.since("update_enrollment", time.Now())
	return s.Store.UpdateEnrollment(ctx, id, fn)
}

func (s timedStore) Bind(ctx context.Context, h store.Hash, enrollmentID string, fn func(*store.Token, *store.Enrollment) (*store.Enrollment, error)) (*store.Token, *store.Enrollment, error) {
	defer s.since("bind", time.Now())
	return s.Store.Bind(ctx, h, enrollmentID, fn)
}

func (s timedStore) Lookup(ctx context.Context, enrollmentID string, h store.Hash) (*store.Enrollment, *store.Token, error) {
	defer s.since("lookup", time.Now())
	return s.Store.Lookup(ctx, enrollmentID, h)
}

func (s timedStore) TokensForEnrollment(ctx context.Context, id string) ([]*store.Token, error) {
	defer s.since("tokens_for_enrollment", time.Now())
	return s.Store.TokensForEnrollment(ctx, id)
}

func (s timedStore) EnrollmentsForUser(ctx context.Context, iss, sub string) ([]*store.Enrollment, error) {
	defer s.since("enrollments_for_user", time.Now())
	return s.Store.EnrollmentsForUser(ctx, iss, sub)
}

func (s timedStore) PutLoginState(ctx context.Context, key string, ls store.LoginState) error {
	defer s.since("put_login_state", time.Now())
	return s.Store.PutLoginState(ctx, key, ls)
}

func (s timedStore) TakeLoginState(ctx context.Context, key string) (store.LoginState, error) {
	defer s.since("take_login_state", time.Now())
	return s.Store.TakeLoginState(ctx, key)
}

func (s timedStore) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	defer s.since("secret", time.Now())
	return s.Store.Secret(ctx, name, gen)
}

func (s timedStore) CreateCode(ctx context.Context, c *store.Code) error {
	defer s.since("create_code", time.Now())
	return s.Store.CreateCode(ctx, c)
}

func (s timedStore) UpdateCode(ctx context.Context, h store.Hash, fn func(*store.Code) error) (*store.Code, error) {
	defer s.since("update_code", time.Now())
	return s.Store.UpdateCode(ctx, h, fn)
}

func (s timedStore) CreateFamily(ctx context.Context, f *store.Family) error {
	defer s.since("create_family", time.Now())
	return s.Store.CreateFamily(ctx, f)
}

func (s timedStore) Family(ctx context.Context, id string) (*store.Family, error) {
	defer s.since("family", time.Now())
	return s.Store.Family(ctx, id)
}

func (s timedStore) UpdateFamily(ctx context.Context, id string, fn func(*store.Family) error) (*store.Family, error) {
	defer s.since("update_family", time.Now())
	return s.Store.UpdateFamily(ctx, id, fn)
}

func (s timedStore) TokensForFamily(ctx context.Context, id string) ([]*store.Token, error) {
	defer s.since("tokens_for_family", time.Now())
	return s.Store.TokensForFamily(ctx, id)
}

func (s timedStore) ScanEnrollments(ctx context.Context, from string, fn func(*store.Enrollment) bool) error {
	defer s.since("scan_enrollments", time.Now())
	return s.Store.ScanEnrollments(ctx, from, fn)
}

func (s timedStore) ScanTokens(ctx context.Context, from []byte, fn func(*store.Token) bool) error {
	defer s.since("scan_tokens", time.Now())
	return s.Store.ScanTokens(ctx, from, fn)
}

func (s timedStore) ScanFamilies(ctx context.Context, from string, fn func(*store.Family) bool) error {
	defer s.since("scan_families", time.Now())
	return s.Store.ScanFamilies(ctx, from, fn)
}

func (s timedStore) CountLoginStates(ctx context.Context) (int, error) {
	defer s.since("count_login_states", time.Now())
	return s.Store.CountLoginStates(ctx)
}

func (s timedStore) TokensForUser(ctx context.Context, iss, sub string) ([]*store.Token, error) {
	defer s.since("tokens_for_user", time.Now())
	return s.Store.TokensForUser(ctx, iss, sub)
}

func (s timedStore) FamiliesForUser(ctx context.Context, iss, sub string) ([]*store.Family, error) {
	defer s.since("families_for_user", time.Now())
	return s.Store.FamiliesForUser(ctx, iss, sub)
}

func (s timedStore) Size(ctx context.Context) (int64, error) {
	defer s.since("size", time.Now())
	return s.Store.Size(ctx)
}

func (s timedStore) Ping(ctx context.Context) error {
	defer s.since("ping", time.Now())
	return s.Store.Ping(ctx)
}

func (s timedStore) Close() error {
	defer s.since("close", time.Now())
	return s.Store.Close()
}
