package badger

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// TestOAuthTTL checks the native TTLs of codes, families and the family
// index, measured on the store's clock like those in TestTTL.
func TestOAuthTTL(t *testing.T) {
	ctx := context.Background()
	logical := time.Now().AddDate(1, 0, 0).Truncate(time.Second)
	const retention = 48 * time.Hour
	s, err := Open(Options{Dir: t.TempDir(), Now: func() time.Time { return logical }, TokenRetention: retention, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	near := func(exp uint64, keep time.Duration) bool {
		want := time.Now().Add(keep).Unix()
		return int64(exp) >= want-5 && int64(exp) <= want+5
	}
	check := func(name string, key []byte, keep time.Duration) {
		t.Helper()
		exp := expiresAt(t, s, key)
		switch {
		case keep == 0 && exp != 0:
			t.Errorf("%s: has TTL %d, want none", name, exp)
		case keep != 0 && !near(exp, keep):
			t.Errorf("%s: expires %v from now, want about %v", name, time.Until(time.Unix(int64(exp), 0)), keep)
		}
	}

	code := &store.Code{Hash: sha256.Sum256([]byte("code")), ExpiresAt: logical.Add(5 * time.Minute)}
	if err := s.CreateCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	check("code", codeKey(code.Hash), 5*time.Minute+codeGrace)
	// Redeeming keeps the code for the same time, so a replay is seen.
	if _, err := s.UpdateCode(ctx, code.Hash, func(c *store.Code) error { c.UsedAt = logical; return nil }); err != nil {
		t.Fatal(err)
	}
	check("used code", codeKey(code.Hash), 5*time.Minute+codeGrace)
	stale := &store.Code{Hash: sha256.Sum256([]byte("stale")), ExpiresAt: logical.Add(-time.Hour)}
	if err := s.CreateCode(ctx, stale); err != nil {
		t.Fatal(err)
	}
	check("expired code", codeKey(stale.Hash), minKeep)

	fam := &store.Family{ID: "F1", ExpiresAt: logical.Add(10 * time.Hour)}
	if err := s.CreateFamily(ctx, fam); err != nil {
		t.Fatal(err)
	}
	check("family", familyKey("F1"), 10*time.Hour+retention)
	// Revocation before expiry does not shorten it; the TTL follows each
	// write.
	if _, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error { f.RevokedAt = logical; return nil }); err != nil {
		t.Fatal(err)
	}
	check("revoked family", familyKey("F1"), 10*time.Hour+retention)
	if _, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
		f.ExpiresAt = logical.Add(-time.Hour)
		f.RevokedAt = logical.Add(time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("family revoked after expiry", familyKey("F1"), time.Hour+retention)
	if _, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
		f.ExpiresAt = logical.Add(-retention - time.Hour)
		f.RevokedAt = time.Time{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("family past retention", familyKey("F1"), minKeep)
	if err := s.CreateFamily(ctx, &store.Family{ID: "forever"}); err != nil {
		t.Fatal(err)
	}
	check("family without expiry", familyKey("forever"), 0)

	tok := &store.Token{Hash: sha256.Sum256([]byte("tok")), ExpiresAt: logical.Add(time.Hour), FamilyID: "F1"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	check("family index", familyIndexKey("F1", tok.Hash), time.Hour+retention)
	if _, err := s.UpdateToken(ctx, tok.Hash, func(t *store.Token) error { t.RevokedAt = logical; return nil }); err != nil {
		t.Fatal(err)
	}
	check("family index of revoked token", familyIndexKey("F1", tok.Hash), retention)
}

// TestFamilyIndexMoves checks the family index keys directly: a change of
// FamilyID deletes the old entry rather than leaving it to be filtered out.
func TestFamilyIndexMoves(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := store.Hash(sha256.Sum256([]byte("tok")))
	if err := s.CreateToken(ctx, &store.Token{Hash: h, ExpiresAt: time.Now().Add(time.Hour), FamilyID: "F1"}); err != nil {
		t.Fatal(err)
	}
	setFamily := func(id string) {
		t.Helper()
		if _, err := s.UpdateToken(ctx, h, func(t *store.Token) error { t.FamilyID = id; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setFamily("F2")
	absent(t, s, familyIndexKey("F1", h))
	if exp := expiresAt(t, s, familyIndexKey("F2", h)); exp == 0 {
		t.Fatal("new family index entry has no TTL")
	}
	setFamily("")
	absent(t, s, familyIndexKey("F2", h))
	for _, id := range []string{"", "F1", "F2"} {
		if got, err := s.TokensForFamily(ctx, id); err != nil || len(got) != 0 {
			t.Fatalf("TokensForFamily(%q): got %d tokens, %v; want none", id, len(got), err)
		}
	}
}

// TestFamilyStoredUnderID checks that UpdateFamily keeps the record under
// the id it was asked for, and that CreateFamily refuses an empty id.
func TestFamilyStoredUnderID(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateFamily(ctx, &store.Family{}); !errors.Is(err, errNoFamilyID) {
		t.Fatalf("CreateFamily without id: got %v, want errNoFamilyID", err)
	}
	if err := s.CreateFamily(ctx, &store.Family{ID: "F1"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error { f.ID = "F2"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "F1" {
		t.Fatalf("UpdateFamily returned ID %q, want F1", got.ID)
	}
	if f, err := s.Family(ctx, "F1"); err != nil || f.ID != "F1" {
		t.Fatalf("Family(F1): got %+v, %v", f, err)
	}
	if _, err := s.Family(ctx, "F2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Family(F2): got %v, want ErrNotFound", err)
	}
}
