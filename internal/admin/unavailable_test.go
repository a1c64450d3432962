package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/mdmauth/mdmauth/internal/store"
)

// downStore is a store whose database cannot be reached.
type downStore struct{ store.Store }

var errDown = fmt.Errorf("postgres: dial tcp: connection refused: %w", store.ErrUnavailable)

func (downStore) Enrollment(context.Context, string) (*store.Enrollment, error) { return nil, errDown }
func (downStore) ScanEnrollments(context.Context, string, func(*store.Enrollment) bool) error {
	return errDown
}
func (downStore) UpdateEnrollment(context.Context, string, func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	return nil, errDown
}

// An unreachable database is a 503 (try again), never a 500 or a 404.
func TestStoreUnavailableIs503(t *testing.T) {
	e := newEnv(t)
	e.store.Close()
	e.swapStore(downStore{e.store})
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/mdm_auth/enrollments"},
		{http.MethodGet, "/mdm_auth/enrollments/E1"},
		{http.MethodPost, "/mdm_auth/enrollments/E1/block"},
	} {
		if status, _, body := e.do(r.method, r.path, ""); status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s, want 503", r.method, r.path, status, body)
		}
	}
}
