package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// idp is the issuer of the suite's users.
const idp = "https://idp.example.com"

// ownedBy returns an active enrollment owned by (iss, sub).
func ownedBy(id, iss, sub string, now time.Time) *store.Enrollment {
	return &store.Enrollment{
		ID:             id,
		Issuer:         iss,
		Subject:        sub,
		ManagedAppleID: "user@appleid.example.com",
		Mode:           "byod",
		Platform:       store.PlatformOther,
		State:          store.StateActive,
		TokenHash:      hashOf("token-" + id),
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// saveEnrollment writes a copy of e under e.ID with UpdateEnrollment and
// fails the test on error.
func saveEnrollment(t *testing.T, s store.Store, e *store.Enrollment) {
	t.Helper()
	cp := *e
	if _, err := s.UpdateEnrollment(context.Background(), e.ID, func(*store.Enrollment) (*store.Enrollment, error) {
		return &cp, nil
	}); err != nil {
		t.Fatalf("UpdateEnrollment(%q): %v", e.ID, err)
	}
}

// changeEnrollment applies change to enrollment id with UpdateEnrollment
// and returns what was written.
func changeEnrollment(t *testing.T, s store.Store, id string, change func(*store.Enrollment)) *store.Enrollment {
	t.Helper()
	got, err := s.UpdateEnrollment(context.Background(), id, func(e *store.Enrollment) (*store.Enrollment, error) {
		if e == nil {
			return nil, fmt.Errorf("enrollment %q does not exist", id)
		}
		change(e)
		return e, nil
	})
	if err != nil {
		t.Fatalf("UpdateEnrollment(%q): %v", id, err)
	}
	return got
}

// assertUserListed checks that EnrollmentsForUser(iss, sub) lists exactly
// want, in any order, with their current contents.
func assertUserListed(t *testing.T, s store.Store, iss, sub string, want ...*store.Enrollment) {
	t.Helper()
	got, err := s.EnrollmentsForUser(context.Background(), iss, sub)
	if err != nil {
		t.Fatalf("EnrollmentsForUser(%q, %q): %v", iss, sub, err)
	}
	byID := func(a, b *store.Enrollment) int { return cmp.Compare(a.ID, b.ID) }
	got = slices.Clone(got)
	want = slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	ids := func(es []*store.Enrollment) (s []string) {
		for _, e := range es {
			if e == nil {
				s = append(s, "<nil>")
				continue
			}
			s = append(s, e.ID)
		}
		return s
	}
	if len(got) != len(want) || slices.Contains(got, nil) {
		t.Fatalf("EnrollmentsForUser(%q, %q) = %q, want %q", iss, sub, ids(got), ids(want))
	}
	for i := range got {
		assertEnrollment(t, got[i], want[i])
	}
}

func testEnrollmentsForUser(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsEmpty", func(t *testing.T) {
		s, c := open(t, f)
		assertUserListed(t, s, idp, "nobody")

		saveEnrollment(t, s, ownedBy("E1", idp, "sub-a", c.Now()))
		unowned := ownedBy("E2", "", "", c.Now())
		saveEnrollment(t, s, unowned)
		assertEnrollment(t, mustEnrollment(t, s, "E2"), unowned)

		assertUserListed(t, s, idp, "sub-b")
		assertUserListed(t, s, "https://other.example.com", "sub-a")
		assertUserListed(t, s, idp, "sub")    // a prefix of sub-a
		assertUserListed(t, s, idp, "sub-a2") // sub-a is a prefix of it
		assertUserListed(t, s, idp, "")
		// An enrollment without an owner belongs to no one.
		assertUserListed(t, s, "", "")
	})

	t.Run("ListsAfterUpdateEnrollment", func(t *testing.T) {
		s, c := open(t, f)
		a1 := ownedBy("E1", idp, "sub-a", c.Now())
		a2 := ownedBy("E2", idp, "sub-a", c.Now())
		b := ownedBy("E3", idp, "sub-b", c.Now())
		other := ownedBy("E4", "https://other.example.com", "sub-a", c.Now())
		for _, e := range []*store.Enrollment{a1, a2, b, other} {
			saveEnrollment(t, s, e)
		}
		assertUserListed(t, s, idp, "sub-a", a1, a2)
		assertUserListed(t, s, idp, "sub-b", b)
		// The same subject at another issuer is another user.
		assertUserListed(t, s, "https://other.example.com", "sub-a", other)

		// A change that keeps the owner keeps the entry, once, with the
		// current contents.
		c.Advance(time.Minute)
		a1 = changeEnrollment(t, s, "E1", func(e *store.Enrollment) {
			e.Platform = store.PlatformMac
			e.TokenHash = hashOf("newer")
			e.UpdatedAt = c.Now()
		})
		assertUserListed(t, s, idp, "sub-a", a1, a2)
	})

	t.Run("ListsAfterBind", func(t *testing.T) {
		s, c := open(t, f)
		ta, tb := newToken("a", c.Now()), newToken("b", c.Now())
		createToken(t, s, ta)
		createToken(t, s, tb)
		_, e1 := bind(t, s, ta.Hash, "E1", c.Now())
		_, e2 := bind(t, s, ta.Hash, "E2", c.Now())
		_, e3 := bind(t, s, tb.Hash, "E3", c.Now())
		assertUserListed(t, s, ta.Issuer, ta.Subject, e1, e2)
		assertUserListed(t, s, tb.Issuer, tb.Subject, e3)

		// Binding again to an enrollment the user owns lists it once.
		_, e1 = bind(t, s, ta.Hash, "E1", c.Now())
		assertUserListed(t, s, ta.Issuer, ta.Subject, e1, e2)

		// A bind that writes no enrollment, or is refused, lists nothing.
		if _, _, err := s.Bind(ctx, ta.Hash, "E4", func(*store.Token, *store.Enrollment) (*store.Enrollment, error) {
			return nil, nil
		}); err != nil {
			t.Fatalf("Bind: %v", err)
		}
		if _, _, err := s.Bind(ctx, ta.Hash, "E5", func(tok *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
			return newEnrollment("E5", tok, c.Now()), errRefused
		}); !errors.Is(err, errRefused) {
			t.Fatalf("Bind: got %v, want the function's error", err)
		}
		assertEnrollmentAbsent(t, s, "E4")
		assertEnrollmentAbsent(t, s, "E5")
		assertUserListed(t, s, ta.Issuer, ta.Subject, e1, e2)
	})

	t.Run("OwnerChangeMovesTheEntry", func(t *testing.T) {
		s, c := open(t, f)
		saveEnrollment(t, s, ownedBy("E1", idp, "sub-a", c.Now()))
		kept := ownedBy("E2", idp, "sub-a", c.Now())
		saveEnrollment(t, s, kept)

		// Another subject.
		e := changeEnrollment(t, s, "E1", func(e *store.Enrollment) { e.Subject = "sub-b" })
		assertUserListed(t, s, idp, "sub-a", kept)
		assertUserListed(t, s, idp, "sub-b", e)

		// Another issuer, same subject.
		e = changeEnrollment(t, s, "E1", func(e *store.Enrollment) { e.Issuer = "https://other.example.com" })
		assertUserListed(t, s, idp, "sub-b")
		assertUserListed(t, s, "https://other.example.com", "sub-b", e)

		// A bind of another user's token takes the enrollment over.
		tc := newToken("c", c.Now())
		createToken(t, s, tc)
		_, e = bind(t, s, tc.Hash, "E1", c.Now())
		assertUserListed(t, s, "https://other.example.com", "sub-b")
		assertUserListed(t, s, tc.Issuer, tc.Subject, e)

		// A refused change moves nothing.
		_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			e.Subject = "sub-d"
			return e, errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateEnrollment: got %v, want the function's error", err)
		}
		assertUserListed(t, s, idp, "sub-d")
		assertUserListed(t, s, tc.Issuer, tc.Subject, e)

		// Clearing the owner takes it out of every listing; setting one
		// again puts it back.
		cleared := changeEnrollment(t, s, "E1", func(e *store.Enrollment) { e.Issuer, e.Subject = "", "" })
		assertEnrollment(t, mustEnrollment(t, s, "E1"), cleared)
		assertUserListed(t, s, tc.Issuer, tc.Subject)
		assertUserListed(t, s, "", "")
		e = changeEnrollment(t, s, "E1", func(e *store.Enrollment) { e.Issuer, e.Subject = idp, "sub-a" })
		assertUserListed(t, s, idp, "sub-a", e, kept)
	})

	t.Run("CollidingUsersStaySeparate", func(t *testing.T) {
		s, c := open(t, f)
		// Pairs of users whose issuer, subject and enrollment id run
		// together into the same bytes when simply concatenated, with or
		// without a zero byte between them.
		users := []struct{ iss, sub, id string }{
			{"a\x00b", "c", "E1"},
			{"a", "b\x00c", "E2"},
			{"ab", "c", "E3"},
			{"a", "bc", "E4"},
			{"a", "b", "cE5"},
			{"a", "b", "E6"},
			{"ab", "", "E7"},
			{"", "ab", "E8"},
			{"a\x00", "b", "E9"},
			{"a", "\x00b", "E10"},
			{"a\x00", "", "E11"},
			{"", "\x00a", "E12"},
		}
		want := map[[2]string][]*store.Enrollment{}
		for _, u := range users {
			e := ownedBy(u.id, u.iss, u.sub, c.Now())
			saveEnrollment(t, s, e)
			k := [2]string{u.iss, u.sub}
			want[k] = append(want[k], e)
		}
		for k, es := range want {
			assertUserListed(t, s, k[0], k[1], es...)
		}
		for _, k := range [][2]string{
			{"a", ""}, {"", "a"}, {"a", "\x00"}, {"a\x00b\x00", "c"}, {"a", "b\x00"}, {"abc", ""},
		} {
			assertUserListed(t, s, k[0], k[1])
		}
	})

	t.Run("EveryStateIsListed", func(t *testing.T) {
		s, c := open(t, f)
		e := ownedBy("E1", idp, "sub-a", c.Now())
		saveEnrollment(t, s, e)
		// The caller decides which states count; the store lists them all
		// with their current state.
		for _, st := range []store.State{store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
			c.Advance(time.Minute)
			e = changeEnrollment(t, s, "E1", func(e *store.Enrollment) {
				e.State = st
				e.UpdatedAt = c.Now()
				if st == store.StateOffboarding {
					e.Deadline = c.Now().Add(time.Hour)
				}
			})
			assertUserListed(t, s, idp, "sub-a", e)
		}
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s, c := open(t, f)
		want := ownedBy("E1", idp, "sub-a", c.Now())
		saveEnrollment(t, s, want)
		got, err := s.EnrollmentsForUser(ctx, idp, "sub-a")
		if err != nil || len(got) != 1 {
			t.Fatalf("EnrollmentsForUser: got %d enrollments, %v; want 1", len(got), err)
		}
		got[0].Subject = "changed-after-list"
		got[0].State = store.StateBlocked
		assertUserListed(t, s, idp, "sub-a", want)
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("ConcurrentOwnerChanges", func(t *testing.T) {
		s, c := open(t, f)
		saveEnrollment(t, s, ownedBy("E1", idp, "sub-0", c.Now()))
		const n = 10
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
					e.Subject = fmt.Sprintf("sub-%d", i)
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
		// Whichever change committed last owns it, and no one else lists
		// it.
		e := mustEnrollment(t, s, "E1")
		assertUserListed(t, s, idp, e.Subject, e)
		for i := range n {
			if sub := fmt.Sprintf("sub-%d", i); sub != e.Subject {
				assertUserListed(t, s, idp, sub)
			}
		}
	})
}
