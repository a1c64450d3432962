package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

// rowCounts returns how many rows each table of schema holds, purged or
// not: what the store cannot tell.
func rowCounts(t *testing.T, schema string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"login_states", "codes", "tokens", "families", "enrollments"} {
		var n int
		if err := query(t, "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// purgeSeed writes, at c's time, rows that are past their time 25 hours
// later (with a retention of a day): 7 login states, 5 codes, 5 tokens
// and 4 families; and rows that are not: one of each, a token that never
// expires, a family revoked early but expiring later, and an enrollment.
func purgeSeed(t *testing.T, s *Store, c *storetest.Clock) {
	t.Helper()
	ctx := context.Background()
	now := c.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 7 {
		must(s.PutLoginState(ctx, fmt.Sprintf("old-%d", i), store.LoginState{Data: []byte("x"), ExpiresAt: now.Add(time.Minute)}))
	}
	must(s.PutLoginState(ctx, "live", store.LoginState{Data: []byte("x"), ExpiresAt: now.Add(26 * time.Hour)}))
	for i := range 5 {
		must(s.CreateCode(ctx, &store.Code{Hash: hash(fmt.Sprintf("old-code-%d", i)), ExpiresAt: now.Add(time.Minute)}))
	}
	must(s.CreateCode(ctx, &store.Code{Hash: hash("live-code"), ExpiresAt: now.Add(26 * time.Hour)}))
	for i := range 4 {
		must(s.CreateToken(ctx, &store.Token{Hash: hash(fmt.Sprintf("old-token-%d", i)), Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(time.Minute)}))
	}
	// Revoked early: retention runs from the revocation.
	must(s.CreateToken(ctx, &store.Token{Hash: hash("revoked-token"), ExpiresAt: now.Add(48 * time.Hour), RevokedAt: now.Add(30 * time.Minute)}))
	must(s.CreateToken(ctx, &store.Token{Hash: hash("live-token"), Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(2 * time.Hour)}))
	must(s.CreateToken(ctx, &store.Token{Hash: hash("forever-token")}))
	for i := range 4 {
		must(s.CreateFamily(ctx, &store.Family{ID: fmt.Sprintf("old-family-%d", i), Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(time.Minute)}))
	}
	// Revoked early, expiring later: retention runs from the expiry.
	must(s.CreateFamily(ctx, &store.Family{ID: "revoked-family", ExpiresAt: now.Add(2 * time.Hour), RevokedAt: now.Add(30 * time.Minute)}))
	must(s.CreateFamily(ctx, &store.Family{ID: "live-family", Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(48 * time.Hour)}))
	if _, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{State: store.StateRemoved, UpdatedAt: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	c.Advance(25 * time.Hour)
}

var (
	seeded = map[string]int{"login_states": 8, "codes": 6, "tokens": 7, "families": 6, "enrollments": 1}
	kept   = map[string]int{"login_states": 1, "codes": 1, "tokens": 2, "families": 2, "enrollments": 1}
)

func assertRows(t *testing.T, what, schema string, want map[string]int) {
	t.Helper()
	got := rowCounts(t, schema)
	for table, n := range want {
		if got[table] != n {
			t.Errorf("%s: %d rows in %s, want %d", what, got[table], table, n)
		}
	}
}

// TestPurge: rows past their time are invisible at once and deleted by
// Purge, in batches of at most PurgeBatch rows; the rest stay.
func TestPurge(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	tr := &tracer{}
	s := openStore(t, Options{Now: c.Now, PurgeBatch: 3, TokenRetention: 24 * time.Hour, Tracer: tr})
	purgeSeed(t, s, c)

	// Before the purge: still there, but gone for readers.
	assertRows(t, "before the purge", s.schema, seeded)
	if _, err := s.Token(ctx, hash("old-token-0")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Token past its retention: %v, want ErrNotFound", err)
	}
	if _, err := s.Token(ctx, hash("revoked-token")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Token past its retention after revocation: %v, want ErrNotFound", err)
	}
	if _, tok, err := s.Lookup(ctx, "E1", hash("old-token-1")); err != nil || tok != nil {
		t.Errorf("Lookup of a token past its retention: %v, %v; want none", tok, err)
	}
	if _, err := s.Family(ctx, "old-family-0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Family past its retention: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateCode(ctx, hash("old-code-0"), func(*store.Code) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateCode past the code's keep time: %v, want ErrNotFound", err)
	}
	if n, err := s.CountLoginStates(ctx); err != nil || n != 1 {
		t.Errorf("CountLoginStates = %d, %v; want 1", n, err)
	}
	if toks, err := s.TokensForUser(ctx, "iss", "sub"); err != nil || len(toks) != 1 {
		t.Errorf("TokensForUser = %d tokens, %v; want the live one", len(toks), err)
	}
	if fams, err := s.FamiliesForUser(ctx, "iss", "sub"); err != nil || len(fams) != 1 {
		t.Errorf("FamiliesForUser = %d families, %v; want the live one", len(fams), err)
	}
	var scanned int
	if err := s.ScanTokens(ctx, nil, func(*store.Token) bool { scanned++; return true }); err != nil || scanned != 2 {
		t.Errorf("ScanTokens saw %d tokens, %v; want the 2 live ones", scanned, err)
	}
	// A key past its time is free again.
	if err := s.CreateToken(ctx, &store.Token{Hash: hash("old-token-3"), ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
		t.Errorf("CreateToken over a token past its retention: %v", err)
	}
	if _, err := s.UpdateToken(ctx, hash("old-token-3"), func(tok *store.Token) error { tok.ExpiresAt = c.Now().Add(-25 * time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}

	tr.reset()
	st, err := s.Purge(ctx)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	want := PurgeStats{LoginStates: 7, Codes: 5, Tokens: 5, Families: 4, Batches: 3 + 2 + 2 + 2}
	if st != want {
		t.Errorf("Purge = %+v, want %+v", st, want)
	}
	var sum int64
	for _, n := range tr.deletes {
		if n > 3 {
			t.Errorf("a purge statement deleted %d rows, more than the batch of 3", n)
		}
		sum += n
	}
	if len(tr.deletes) != want.Batches || sum != 21 {
		t.Errorf("purge statements deleted %v, want %d statements deleting 21 rows", tr.deletes, want.Batches)
	}
	assertRows(t, "after the purge", s.schema, kept)
	for _, h := range []string{"live-token", "forever-token"} {
		if _, err := s.Token(ctx, hash(h)); err != nil {
			t.Errorf("Token(%s) after the purge: %v", h, err)
		}
	}
	for _, id := range []string{"live-family", "revoked-family"} {
		if _, err := s.Family(ctx, id); err != nil {
			t.Errorf("Family(%s) after the purge: %v", id, err)
		}
	}
	if _, err := s.TakeLoginState(ctx, "live"); err != nil {
		t.Errorf("TakeLoginState(live) after the purge: %v", err)
	}

	st, err = s.Purge(ctx)
	if err != nil || st != (PurgeStats{Batches: 4}) {
		t.Errorf("second Purge = %+v, %v; want nothing deleted", st, err)
	}
}

// TestPurgeLoginStateGrace: the purge leaves a login state a minute past
// its expiry (for instances whose clock is a little behind), while reads
// treat it as gone at once.
func TestPurgeLoginStateGrace(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	s := openStore(t, Options{Now: c.Now})
	if err := s.PutLoginState(ctx, "k", store.LoginState{Data: []byte("x"), ExpiresAt: c.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	c.Advance(90 * time.Second)
	if st, err := s.Purge(ctx); err != nil || st.LoginStates != 0 {
		t.Fatalf("Purge within the grace = %+v, %v; want the state left", st, err)
	}
	if n, err := s.CountLoginStates(ctx); err != nil || n != 0 {
		t.Fatalf("CountLoginStates = %d, %v; want 0", n, err)
	}
	c.Advance(time.Minute)
	if st, err := s.Purge(ctx); err != nil || st.LoginStates != 1 {
		t.Fatalf("Purge past the grace = %+v, %v; want the state deleted", st, err)
	}
}

// TestPurgeOneAtATime: while one Store purges a schema, the others skip;
// several purging at once is harmless.
func TestPurgeOneAtATime(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	schema := freshSchema()
	opts := Options{Schema: schema, Now: c.Now, PurgeBatch: 2, TokenRetention: 24 * time.Hour}
	a := openStore(t, opts)
	purgeSeed(t, a, c)

	// Another instance holds the purge lock.
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", a.purgeKey); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Purge(ctx); err != nil || st != (PurgeStats{Skipped: true}) {
		t.Fatalf("Purge while another holds the lock = %+v, %v; want skipped", st, err)
	}
	assertRows(t, "after a skipped purge", schema, seeded)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", a.purgeKey); err != nil {
		t.Fatal(err)
	}

	// Four instances at once: no errors, everything deleted once.
	stores := []*Store{a, openStore(t, opts), openStore(t, opts), openStore(t, opts)}
	stats := make([]PurgeStats, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { stats[i], errs[i] = s.Purge(ctx) })
	}
	wg.Wait()
	var total int64
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("concurrent Purge %d: %v", i, errs[i])
		}
		total += stats[i].LoginStates + stats[i].Codes + stats[i].Tokens + stats[i].Families
	}
	if total != 21 {
		t.Errorf("concurrent purges deleted %d rows in all, want 21: %+v", total, stats)
	}
	assertRows(t, "after concurrent purges", schema, kept)
	// The lock was released: a purge runs again.
	if st, err := a.Purge(ctx); err != nil || st.Skipped {
		t.Fatalf("Purge after the others = %+v, %v", st, err)
	}
}

// TestBackgroundPurge: with a PurgeInterval the store purges on its own.
func TestBackgroundPurge(t *testing.T) {
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	s := openStore(t, Options{Now: c.Now, TokenRetention: 24 * time.Hour, PurgeInterval: 20 * time.Millisecond})
	purgeSeed(t, s, c)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := rowCounts(t, s.schema)
		if got["tokens"] == kept["tokens"] && got["login_states"] == kept["login_states"] &&
			got["codes"] == kept["codes"] && got["families"] == kept["families"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no background purge: rows %v, want %v", got, kept)
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertRows(t, "after the background purge", s.schema, kept)
}
