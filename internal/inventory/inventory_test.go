package inventory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// memInventory is a fixed store.Inventory for the counting rules.
type memInventory struct {
	enrollments []*store.Enrollment
	tokens      []*store.Token
	families    []*store.Family
	logins      int
	size        int64
	err         error
}

func (m *memInventory) ScanEnrollments(_ context.Context, _ string, fn func(*store.Enrollment) bool) error {
	for _, e := range m.enrollments {
		if !fn(e) {
			break
		}
	}
	return m.err
}

func (m *memInventory) ScanTokens(_ context.Context, _ []byte, fn func(*store.Token) bool) error {
	for _, t := range m.tokens {
		if !fn(t) {
			break
		}
	}
	return nil
}

func (m *memInventory) ScanFamilies(_ context.Context, _ string, fn func(*store.Family) bool) error {
	for _, f := range m.families {
		if !fn(f) {
			break
		}
	}
	return nil
}

func (m *memInventory) CountLoginStates(context.Context) (int, error) { return m.logins, nil }

func (m *memInventory) TokensForUser(context.Context, string, string) ([]*store.Token, error) {
	return nil, errors.New("unused")
}

func (m *memInventory) FamiliesForUser(context.Context, string, string) ([]*store.Family, error) {
	return nil, errors.New("unused")
}

func (m *memInventory) Size(context.Context) (int64, error) { return m.size, nil }

func TestCompute(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	inv := &memInventory{
		enrollments: []*store.Enrollment{
			{ID: "a", State: store.StateActive, Mode: "byod"},
			{ID: "b", State: store.StateActive, Mode: "adde"},
			{ID: "c", State: store.StateReauth, Mode: "byod"},
			{ID: "d", State: store.StateRemoved, Mode: "byod"},
		},
		tokens: []*store.Token{
			// Live, bound web sign-in: counted, not stalled.
			{IssuedAt: ago(time.Hour), ExpiresAt: now.Add(time.Hour), EnrollmentID: "a"},
			// Live, unbound, an hour old: stalled.
			{IssuedAt: ago(time.Hour), ExpiresAt: now.Add(time.Hour)},
			// Unbound but recent: not yet stalled.
			{IssuedAt: ago(time.Minute), ExpiresAt: now.Add(time.Hour)},
			// Revoked: not live; an old sign-in outside the window.
			{IssuedAt: ago(48 * time.Hour), ExpiresAt: now.Add(time.Hour), RevokedAt: ago(time.Hour)},
			// Expired, in a family: not live, not counted as a sign-in.
			{IssuedAt: ago(2 * time.Hour), ExpiresAt: ago(time.Hour), FamilyID: "f1"},
		},
		families: []*store.Family{
			{ID: "f1", SignedInAt: ago(2 * time.Hour), ExpiresAt: now.Add(time.Hour), EnrollmentID: "b"},
			{ID: "f2", SignedInAt: ago(30 * time.Minute), ExpiresAt: now.Add(time.Hour)},
			{ID: "f3", SignedInAt: ago(30 * time.Minute), ExpiresAt: now.Add(time.Hour), RevokedAt: ago(time.Minute)},
		},
		logins: 7,
		size:   4096,
	}
	s, err := Compute(context.Background(), inv, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[store.State]int{store.StateActive: 2, store.StateReauth: 1, store.StateBlocked: 0, store.StateOffboarding: 0, store.StateRemoved: 1}
	for st, n := range want {
		if s.Enrollments[st] != n {
			t.Errorf("enrollments[%s] = %d, want %d", st, s.Enrollments[st], n)
		}
	}
	if s.EnrollmentsByMode["byod"] != 2 || s.EnrollmentsByMode["adde"] != 1 {
		t.Errorf("by mode = %v, want byod 2 (removed not counted), adde 1", s.EnrollmentsByMode)
	}
	checks := []struct {
		name      string
		got, want int
	}{
		{"live tokens", s.LiveTokens, 3},
		{"live families", s.LiveFamilies, 2},
		{"pending sign-ins", s.PendingSignIns, 7},
		// 3 web sign-ins in the window + 3 families.
		{"sign-ins", s.SignIns, 6},
		// The hour-old unbound token, and f2 and f3 (revoked after
		// stalling still stalled).
		{"stalled", s.Stalled, 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s.StoreBytes != 4096 || s.StallAfter != DefaultStallAfter || !s.At.Equal(now) {
		t.Errorf("bytes %d, stall %v, at %v", s.StoreBytes, s.StallAfter, s.At)
	}
}

func TestComputeStallAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	inv := &memInventory{tokens: []*store.Token{{IssuedAt: now.Add(-10 * time.Minute), ExpiresAt: now.Add(time.Hour)}}}
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{5 * time.Minute, 1}, {20 * time.Minute, 0}} {
		s, err := Compute(context.Background(), inv, now, c.after)
		if err != nil {
			t.Fatal(err)
		}
		if s.Stalled != c.want {
			t.Errorf("stall after %v: stalled = %d, want %d", c.after, s.Stalled, c.want)
		}
	}
}

func TestComputeError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := Compute(context.Background(), &memInventory{err: boom}, time.Now(), 0)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the store's error", err)
	}
}

func TestComputeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	inv := &memInventory{enrollments: []*store.Enrollment{{ID: "a", State: store.StateActive}, {ID: "b", State: store.StateActive}}}
	if _, err := Compute(ctx, inv, time.Now(), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
