package badger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// TestPurgedRecordsAreNotSeen writes records whose Badger TTL has passed,
// and index entries whose record is gone, and checks that no scan or
// listing returns them.
func TestPurgedRecordsAreNotSeen(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, t.TempDir(), time.Now)
	now := time.Now()
	live := &store.Token{Hash: sha256.Sum256([]byte("live")), Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateToken(ctx, live); err != nil {
		t.Fatal(err)
	}
	liveFam := &store.Family{ID: "F1", Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateFamily(ctx, liveFam); err != nil {
		t.Fatal(err)
	}
	past := uint64(now.Add(-time.Second).Unix())
	dead := &store.Token{Hash: sha256.Sum256([]byte("dead")), Issuer: "iss", Subject: "sub"}
	deadFam := &store.Family{ID: "F0", Issuer: "iss", Subject: "sub"}
	orphan := &store.Token{Hash: sha256.Sum256([]byte("orphan")), Issuer: "iss", Subject: "sub"}
	err := s.db.Update(func(txn *badgerdb.Txn) error {
		tv, _ := json.Marshal(dead)
		fv, _ := json.Marshal(deadFam)
		lv, _ := json.Marshal(loginRecord{Data: []byte("x"), ExpiresAt: now.Add(time.Hour)})
		for _, e := range []*badgerdb.Entry{
			// Records past their TTL, and their index entries.
			{Key: tokenKey(dead.Hash), Value: tv, ExpiresAt: past},
			{Key: tokenGrantKey(dead), ExpiresAt: past},
			{Key: familyKey(deadFam.ID), Value: fv, ExpiresAt: past},
			{Key: familyGrantKey(deadFam), ExpiresAt: past},
			{Key: loginStateKey("dead"), Value: lv, ExpiresAt: past},
			// Index entries that outlived their records.
			{Key: tokenGrantKey(orphan)},
			{Key: familyGrantKey(&store.Family{ID: "F9", Issuer: "iss", Subject: "sub"})},
		} {
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var toks []store.Hash
	if err := s.ScanTokens(ctx, nil, func(tk *store.Token) bool { toks = append(toks, tk.Hash); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(toks, []store.Hash{live.Hash}) {
		t.Errorf("ScanTokens = %x, want only the live token", toks)
	}
	var fams []string
	if err := s.ScanFamilies(ctx, "", func(f *store.Family) bool { fams = append(fams, f.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fams, []string{"F1"}) {
		t.Errorf("ScanFamilies = %q, want [F1]", fams)
	}
	if got, err := s.TokensForUser(ctx, "iss", "sub"); err != nil || len(got) != 1 || got[0].Hash != live.Hash {
		t.Errorf("TokensForUser = %v, %v; want only the live token", got, err)
	}
	if got, err := s.FamiliesForUser(ctx, "iss", "sub"); err != nil || len(got) != 1 || got[0].ID != "F1" {
		t.Errorf("FamiliesForUser = %v, %v; want only F1", got, err)
	}
	if n, err := s.CountLoginStates(ctx); err != nil || n != 0 {
		t.Errorf("CountLoginStates = %d, %v; want 0", n, err)
	}
}

// TestGrantIndexFollowsRecords checks the grant index keys directly: they
// expire with their records whenever those are rewritten, and a change of
// owner deletes the old entry rather than leaving it to be filtered out.
func TestGrantIndexFollowsRecords(t *testing.T) {
	ctx := context.Background()
	logical := time.Now().AddDate(1, 0, 0).Truncate(time.Second)
	s, err := Open(Options{Dir: t.TempDir(), Now: func() time.Time { return logical }, TokenRetention: 48 * time.Hour, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	tok := &store.Token{Hash: sha256.Sum256([]byte("tok")), Issuer: "iss", Subject: "a", ExpiresAt: logical.Add(10 * time.Hour)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	fam := &store.Family{ID: "F1", Issuer: "iss", Subject: "a", ExpiresAt: logical.Add(10 * time.Hour)}
	if err := s.CreateFamily(ctx, fam); err != nil {
		t.Fatal(err)
	}
	same := func(what string, record, index []byte) {
		t.Helper()
		r, i := expiresAt(t, s, record), expiresAt(t, s, index)
		if r == 0 || r != i {
			t.Fatalf("%s: record expires at %d, grant entry at %d", what, r, i)
		}
	}
	same("new token", tokenKey(tok.Hash), tokenGrantKey(tok))
	same("new family", familyKey("F1"), familyGrantKey(fam))
	before := expiresAt(t, s, tokenGrantKey(tok))

	// Revocation, binding and rotation rewrite the records with new TTLs.
	tok, err = s.UpdateToken(ctx, tok.Hash, func(tk *store.Token) error { tk.RevokedAt = logical.Add(-time.Hour); return nil })
	if err != nil {
		t.Fatal(err)
	}
	same("revoked token", tokenKey(tok.Hash), tokenGrantKey(tok))
	if after := expiresAt(t, s, tokenGrantKey(tok)); after >= before {
		t.Fatalf("revocation did not bring the grant entry's expiry forward: %d, was %d", after, before)
	}
	tok, _, err = s.Bind(ctx, tok.Hash, "E1", func(*store.Token, *store.Enrollment) (*store.Enrollment, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	same("bound token", tokenKey(tok.Hash), tokenGrantKey(tok))
	fam, err = s.UpdateFamily(ctx, "F1", func(f *store.Family) error { f.ExpiresAt = logical.Add(90 * 24 * time.Hour); return nil })
	if err != nil {
		t.Fatal(err)
	}
	same("extended family", familyKey("F1"), familyGrantKey(fam))

	// Owner changes move the entries.
	oldTok, oldFam := tokenGrantKey(tok), familyGrantKey(fam)
	tok, err = s.UpdateToken(ctx, tok.Hash, func(tk *store.Token) error { tk.Subject = "b"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	fam, err = s.UpdateFamily(ctx, "F1", func(f *store.Family) error { f.Subject = "b"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	absent(t, s, oldTok)
	absent(t, s, oldFam)
	same("moved token", tokenKey(tok.Hash), tokenGrantKey(tok))
	same("moved family", familyKey("F1"), familyGrantKey(fam))

	// Clearing the owner leaves no entry at all.
	if _, err := s.UpdateToken(ctx, tok.Hash, func(tk *store.Token) error { tk.Issuer, tk.Subject = "", ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error { f.Issuer, f.Subject = "", ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if n := len(keysOfKind(t, s, kindGrantIndex)); n != 0 {
		t.Fatalf("grant index holds %d entries after the owners were cleared, want 0", n)
	}
}

// TestGrantIndexBackfill checks that opening a database written before
// the grant index existed indexes its tokens and families once, with
// their records' expiry.
func TestGrantIndexBackfill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	toks := []*store.Token{
		{Hash: sha256.Sum256([]byte("a1")), Issuer: "iss", Subject: "a", ExpiresAt: now.Add(time.Hour)},
		{Hash: sha256.Sum256([]byte("a2")), Issuer: "iss", Subject: "a", ExpiresAt: now.Add(2 * time.Hour), EnrollmentID: "E1"},
		{Hash: sha256.Sum256([]byte("b1")), Issuer: "iss", Subject: "b", ExpiresAt: now.Add(time.Hour)},
		{Hash: sha256.Sum256([]byte("none")), ExpiresAt: now.Add(time.Hour)},
	}
	fams := []*store.Family{
		{ID: "F1", Issuer: "iss", Subject: "a", ExpiresAt: now.Add(time.Hour)},
		{ID: "F2", Issuer: "iss", Subject: "b", ExpiresAt: now.Add(time.Hour)},
	}
	for _, tk := range toks {
		if err := s.CreateToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fams {
		if err := s.CreateFamily(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	// Remove the index and its marker, as an older version left them.
	keys := keysOfKind(t, s, kindGrantIndex)
	err = s.db.Update(func(txn *badgerdb.Txn) error {
		for _, k := range append(keys, grantIndexMarker) {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.TokensForUser(ctx, "iss", "a"); err != nil || len(got) != 0 {
		t.Fatalf("before backfill: got %d tokens, %v; want none", len(got), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, dir, time.Now)
	hashes := func(iss, sub string) []store.Hash {
		t.Helper()
		got, err := s.TokensForUser(ctx, iss, sub)
		if err != nil {
			t.Fatal(err)
		}
		var hs []store.Hash
		for _, tk := range got {
			hs = append(hs, tk.Hash)
		}
		return hs
	}
	cmpHash := func(a, b store.Hash) int { return bytes.Compare(a[:], b[:]) }
	if got, want := hashes("iss", "a"), slices.SortedFunc(slices.Values([]store.Hash{toks[0].Hash, toks[1].Hash}), cmpHash); !slices.Equal(got, want) {
		t.Errorf("TokensForUser(iss, a) = %x, want %x", got, want)
	}
	if got := hashes("iss", "b"); !slices.Equal(got, []store.Hash{toks[2].Hash}) {
		t.Errorf("TokensForUser(iss, b) = %x", got)
	}
	if got, err := s.FamiliesForUser(ctx, "iss", "b"); err != nil || len(got) != 1 || got[0].ID != "F2" {
		t.Errorf("FamiliesForUser(iss, b) = %v, %v", got, err)
	}
	for _, tk := range toks[:3] {
		if r, i := expiresAt(t, s, tokenKey(tk.Hash)), expiresAt(t, s, tokenGrantKey(tk)); r == 0 || r != i {
			t.Errorf("token %s: record expires at %d, backfilled entry at %d", tk.ID(), r, i)
		}
	}
	for _, f := range fams {
		if r, i := expiresAt(t, s, familyKey(f.ID)), expiresAt(t, s, familyGrantKey(f)); r == 0 || r != i {
			t.Errorf("family %s: record expires at %d, backfilled entry at %d", f.ID, r, i)
		}
	}
	expiresAt(t, s, grantIndexMarker)
}

// TestScanCallbackMayUseStore checks that fn may call the store, and that a
// Close while a scan runs ends the scan instead of waiting on it forever.
func TestScanCallbackMayUseStore(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, t.TempDir(), time.Now)
	for _, seed := range []string{"a", "b", "c"} {
		h := store.Hash(sha256.Sum256([]byte(seed)))
		if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "iss", Subject: seed, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Bind(ctx, h, "E-"+seed, func(tk *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
			return &store.Enrollment{Issuer: tk.Issuer, Subject: tk.Subject, State: store.StateActive, TokenHash: tk.Hash}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Reads and writes from fn.
	seen := 0
	err := s.ScanEnrollments(ctx, "", func(e *store.Enrollment) bool {
		seen++
		toks, err := s.TokensForEnrollment(ctx, e.ID)
		if err != nil || len(toks) != 1 {
			t.Errorf("TokensForEnrollment(%s) in fn: %d, %v", e.ID, len(toks), err)
		}
		if _, err := s.UpdateEnrollment(ctx, e.ID, func(e *store.Enrollment) (*store.Enrollment, error) {
			e.State = store.StateReauth
			return e, nil
		}); err != nil {
			t.Errorf("UpdateEnrollment in fn: %v", err)
		}
		return true
	})
	if err != nil || seen != 3 {
		t.Fatalf("ScanEnrollments: %d seen, %v", seen, err)
	}

	// Another goroutine closes the store while fn runs: fn's calls fail
	// with ErrClosed, the scan ends with it and Close returns.
	closed := make(chan error, 1)
	calls := 0
	err = s.ScanTokens(ctx, nil, func(tk *store.Token) bool {
		calls++
		if calls == 1 {
			go func() { closed <- s.Close() }()
			for !s.closing.Load() {
				time.Sleep(time.Millisecond)
			}
			if _, err := s.Token(ctx, tk.Hash); !errors.Is(err, store.ErrClosed) {
				t.Errorf("Token in fn during Close: got %v, want ErrClosed", err)
			}
		}
		return true
	})
	if !errors.Is(err, store.ErrClosed) || calls != 1 {
		t.Fatalf("ScanTokens during Close: %d calls, %v; want 1, ErrClosed", calls, err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the scan ended")
	}
}

func TestSizeCountsFiles(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, t.TempDir(), time.Now)
	n, err := s.Size(ctx)
	if err != nil || n <= 0 {
		t.Fatalf("Size = %d, %v; want > 0", n, err)
	}
}

func TestGrantKeysSelfDelimiting(t *testing.T) {
	users := [][2]string{{"a", ""}, {"", "a"}, {"a", "t"}, {"a\x00", "t"}, {"at", ""}, {"a", "f"}, {"", ""}}
	for _, a := range users {
		for _, grant := range []byte{grantToken, grantFamily} {
			pa := grantPrefix(a[0], a[1], grant)
			for _, b := range users {
				if a == b {
					continue
				}
				kt := tokenGrantKey(&store.Token{Issuer: b[0], Subject: b[1]})
				kf := familyGrantKey(&store.Family{ID: "t\x00f", Issuer: b[0], Subject: b[1]})
				for _, k := range [][]byte{kt, kf} {
					if k != nil && bytes.HasPrefix(k, pa) {
						t.Fatalf("grant prefix of %q begins a key of %q", a, b)
					}
				}
			}
		}
	}
}
