package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// newEnrollment returns an active enrollment owned by the token's user.
func newEnrollment(id string, tok *store.Token, now time.Time) *store.Enrollment {
	return &store.Enrollment{
		ID:             id,
		Issuer:         tok.Issuer,
		Subject:        tok.Subject,
		ManagedAppleID: tok.ManagedAppleID,
		Mode:           tok.Mode,
		Platform:       store.PlatformOther,
		State:          store.StateActive,
		TokenHash:      tok.Hash,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// mustEnrollment reads an enrollment and fails the test on error.
func mustEnrollment(t *testing.T, s store.Store, id string) *store.Enrollment {
	t.Helper()
	got, err := s.Enrollment(context.Background(), id)
	if err != nil {
		t.Fatalf("Enrollment(%q): %v", id, err)
	}
	if got == nil {
		t.Fatalf("Enrollment(%q) returned nil without error", id)
	}
	return got
}

// assertEnrollmentAbsent fails unless Enrollment reports ErrNotFound.
func assertEnrollmentAbsent(t *testing.T, s store.Store, id string) {
	t.Helper()
	if e, err := s.Enrollment(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Enrollment(%q): got %+v, %v; want ErrNotFound", id, e, err)
	}
}

func testEnrollments(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsErrNotFound", func(t *testing.T) {
		s, _ := open(t, f)
		assertEnrollmentAbsent(t, s, "nope")
	})

	t.Run("CreateThenUpdate", func(t *testing.T) {
		s, c := open(t, f)
		want := newEnrollment("E1", newToken("a", c.Now()), c.Now())
		got, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			if e != nil {
				t.Errorf("first UpdateEnrollment got %+v, want nil", *e)
			}
			cp := *want
			return &cp, nil
		})
		if err != nil {
			t.Fatalf("UpdateEnrollment: %v", err)
		}
		assertEnrollment(t, got, want)
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)

		c.Advance(time.Minute)
		got, err = s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			if e == nil {
				t.Fatal("second UpdateEnrollment got nil")
			}
			assertEnrollment(t, e, want)
			e.State = store.StateOffboarding
			e.Deadline = c.Now().Add(time.Hour)
			e.UpdatedAt = c.Now()
			return e, nil
		})
		if err != nil {
			t.Fatalf("UpdateEnrollment: %v", err)
		}
		want.State = store.StateOffboarding
		want.Deadline = c.Now().Add(time.Hour)
		want.UpdatedAt = c.Now()
		assertEnrollment(t, got, want)
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("NilWritesNothing", func(t *testing.T) {
		s, c := open(t, f)
		got, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
			return nil, nil
		})
		if err != nil || got != nil {
			t.Fatalf("UpdateEnrollment returning nil: got %+v, %v; want nil, nil", got, err)
		}
		assertEnrollmentAbsent(t, s, "E1")

		want := newEnrollment("E1", newToken("a", c.Now()), c.Now())
		if _, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
			return want, nil
		}); err != nil {
			t.Fatalf("UpdateEnrollment: %v", err)
		}
		if _, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			e.State = store.StateBlocked
			return nil, nil
		}); err != nil {
			t.Fatalf("UpdateEnrollment returning nil for an existing record: %v", err)
		}
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("ErrorAborts", func(t *testing.T) {
		s, c := open(t, f)
		_, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
			return newEnrollment("E1", newToken("a", c.Now()), c.Now()), errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateEnrollment: got %v, want the function's error", err)
		}
		assertEnrollmentAbsent(t, s, "E1")

		want := newEnrollment("E1", newToken("a", c.Now()), c.Now())
		if _, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
			return want, nil
		}); err != nil {
			t.Fatalf("UpdateEnrollment: %v", err)
		}
		_, err = s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			e.State = store.StateRemoved
			return e, errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateEnrollment: got %v, want the function's error", err)
		}
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("ConcurrentUpdatesAreAtomic", func(t *testing.T) {
		s, _ := open(t, f)
		const n = 10
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
					if e == nil {
						e = &store.Enrollment{ID: "E1", State: store.StateActive}
					}
					e.ManagedAppleID += "x"
					return e, nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent UpdateEnrollment: %v", err)
			}
		}
		if got := mustEnrollment(t, s, "E1").ManagedAppleID; got != strings.Repeat("x", n) {
			t.Fatalf("after %d concurrent appends ManagedAppleID is %q: updates were lost", n, got)
		}
	})
}
