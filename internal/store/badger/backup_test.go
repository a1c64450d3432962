package badger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// rawEntry is what Badger holds under a key.
type rawEntry struct {
	value     string
	expiresAt uint64
}

// dump returns every live key of the database with its value and expiry.
func dump(t *testing.T, db *badgerdb.DB) map[string]rawEntry {
	t.Helper()
	out := map[string]rawEntry{}
	err := db.View(func(txn *badgerdb.Txn) error {
		it := txn.NewIterator(badgerdb.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(item.KeyCopy(nil))] = rawEntry{string(v), item.ExpiresAt()}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return out
}

// seeded is what seedStore wrote.
type seeded struct {
	bound, web, fam *store.Token
	enrollment      *store.Enrollment
	family          *store.Family
	code            *store.Code
	secret          []byte
	login           store.LoginState
}

// seedStore writes a record of every kind, with every kind of index entry.
func seedStore(t *testing.T, s *Store, now time.Time) seeded {
	t.Helper()
	ctx := context.Background()
	var d seeded
	tok := func(seed, family string) *store.Token {
		return &store.Token{
			Hash: sha256.Sum256([]byte(seed)), Issuer: "https://idp.example.com", Subject: "sub\x00a",
			ManagedAppleID: "a@appleid.example.com", Mode: "byod", IssuedAt: now,
			ExpiresAt: now.Add(time.Hour), FamilyID: family,
		}
	}
	d.bound, d.web, d.fam = tok("bound", ""), tok("web", ""), tok("fam", "F1")
	for _, tk := range []*store.Token{d.bound, d.web, d.fam} {
		if err := s.CreateToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	d.bound, d.enrollment, err = s.Bind(ctx, d.bound.Hash, "E1", func(tk *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{Issuer: tk.Issuer, Subject: tk.Subject, State: store.StateActive, TokenHash: tk.Hash, CreatedAt: now}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.family = &store.Family{
		ID: "F1", Issuer: d.fam.Issuer, Subject: d.fam.Subject, ClientID: "client",
		RefreshHash: sha256.Sum256([]byte("refresh")), SignedInAt: now, ExpiresAt: now.Add(24 * time.Hour),
	}
	if err := s.CreateFamily(ctx, d.family); err != nil {
		t.Fatal(err)
	}
	d.code = &store.Code{Hash: sha256.Sum256([]byte("code")), ClientID: "client", ExpiresAt: now.Add(time.Minute)}
	if err := s.CreateCode(ctx, d.code); err != nil {
		t.Fatal(err)
	}
	d.login = store.LoginState{Data: []byte("pending"), ExpiresAt: now.Add(10 * time.Minute)}
	if err := s.PutLoginState(ctx, "k", d.login); err != nil {
		t.Fatal(err)
	}
	if d.secret, err = s.Secret(ctx, "signing", func() ([]byte, error) { return []byte("secret"), nil }); err != nil {
		t.Fatal(err)
	}
	return d
}

// backup returns the store's backup stream.
func backup(t *testing.T, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes()
}

// hookWriter calls hook before its first write.
type hookWriter struct {
	w    io.Writer
	once sync.Once
	hook func()
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.once.Do(h.hook)
	return h.w.Write(p)
}

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	s := openAt(t, t.TempDir(), clock)
	d := seedStore(t, s, now)
	before := dump(t, s.db)
	for _, kind := range []byte{kindToken, kindEnrollment, kindIndex, kindLoginState, kindSecret, kindCode,
		kindFamily, kindFamilyIndex, kindUserIndex, kindGrantIndex, kindMeta} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(before)), func(k string) bool { return k[0] == kind }) {
			t.Fatalf("seed wrote no key of kind %q", kind)
		}
	}

	// The store stays usable during a backup, and what is written
	// meanwhile is not in it.
	late := &store.Token{Hash: sha256.Sum256([]byte("late")), Issuer: "iss", Subject: "sub", ExpiresAt: now.Add(time.Hour)}
	var buf bytes.Buffer
	w := &hookWriter{w: &buf, hook: func() {
		if err := s.CreateToken(ctx, late); err != nil {
			t.Errorf("CreateToken during Backup: %v", err)
		}
	}}
	if err := s.Backup(ctx, w); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if _, err := s.Token(ctx, late.Hash); err != nil {
		t.Fatalf("token written during Backup: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r := openAt(t, dir, clock)

	// Every key, index entries and schema markers included, with its
	// value and its expiry.
	after := dump(t, r.db)
	for k, want := range before {
		got, ok := after[k]
		switch {
		case !ok:
			t.Errorf("key %q missing after restore", k)
		case got != want:
			t.Errorf("key %q: restored %+v, want %+v", k, got, want)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("key %q restored but not in the snapshot", k)
		}
	}
	if exp := after[string(tokenKey(d.bound.Hash))].expiresAt; exp == 0 {
		t.Error("restored token has no TTL")
	}

	// And through the API.
	if got, err := r.Token(ctx, d.bound.Hash); err != nil || got.EnrollmentID != "E1" {
		t.Errorf("Token after restore: %+v, %v", got, err)
	}
	if _, err := r.Token(ctx, late.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token written during Backup: got %v after restore, want ErrNotFound", err)
	}
	if got, err := r.Enrollment(ctx, "E1"); err != nil || got.TokenHash != d.bound.Hash {
		t.Errorf("Enrollment after restore: %+v, %v", got, err)
	}
	hashes := func(ts []*store.Token, err error) []store.Hash {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var hs []store.Hash
		for _, tk := range ts {
			hs = append(hs, tk.Hash)
		}
		slices.SortFunc(hs, func(a, b store.Hash) int { return bytes.Compare(a[:], b[:]) })
		return hs
	}
	sorted := func(hs ...store.Hash) []store.Hash {
		slices.SortFunc(hs, func(a, b store.Hash) int { return bytes.Compare(a[:], b[:]) })
		return hs
	}
	if got := hashes(r.TokensForEnrollment(ctx, "E1")); !slices.Equal(got, sorted(d.bound.Hash)) {
		t.Errorf("TokensForEnrollment after restore: %x", got)
	}
	if got := hashes(r.TokensForFamily(ctx, "F1")); !slices.Equal(got, sorted(d.fam.Hash)) {
		t.Errorf("TokensForFamily after restore: %x", got)
	}
	if got := hashes(r.TokensForUser(ctx, d.web.Issuer, d.web.Subject)); !slices.Equal(got, sorted(d.bound.Hash, d.web.Hash, d.fam.Hash)) {
		t.Errorf("TokensForUser after restore: %x", got)
	}
	if got, err := r.EnrollmentsForUser(ctx, d.enrollment.Issuer, d.enrollment.Subject); err != nil || len(got) != 1 || got[0].ID != "E1" {
		t.Errorf("EnrollmentsForUser after restore: %v, %v", got, err)
	}
	if got, err := r.FamiliesForUser(ctx, d.family.Issuer, d.family.Subject); err != nil || len(got) != 1 || got[0].ID != "F1" {
		t.Errorf("FamiliesForUser after restore: %v, %v", got, err)
	}
	if got, err := r.Secret(ctx, "signing", func() ([]byte, error) { return []byte("other"), nil }); err != nil || !bytes.Equal(got, d.secret) {
		t.Errorf("Secret after restore: %q, %v", got, err)
	}
	if n, err := r.CountLoginStates(ctx); err != nil || n != 1 {
		t.Errorf("CountLoginStates after restore: %d, %v", n, err)
	}
	if got, err := r.TakeLoginState(ctx, "k"); err != nil || !bytes.Equal(got.Data, d.login.Data) {
		t.Errorf("TakeLoginState after restore: %+v, %v", got, err)
	}
	if _, err := r.UpdateCode(ctx, d.code.Hash, func(c *store.Code) error { c.UsedAt = now; return nil }); err != nil {
		t.Errorf("UpdateCode after restore: %v", err)
	}
	// The restored database takes new writes.
	if err := r.CreateToken(ctx, late); err != nil {
		t.Errorf("CreateToken after restore: %v", err)
	}
}

// TestBackupKeepsTTLs checks that restored records keep their expiry
// instant (Badger's TTLs are absolute wall-clock times).
func TestBackupKeepsTTLs(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, t.TempDir(), time.Now)
	if err := s.PutLoginState(ctx, "short", store.LoginState{Data: []byte("x"), ExpiresAt: time.Now().Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	h := store.Hash(sha256.Sum256([]byte("tok")))
	if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "iss", Subject: "sub", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"login state": expiresAt(t, s, loginStateKey("short")),
		"token":       expiresAt(t, s, tokenKey(h)),
		"grant":       expiresAt(t, s, tokenGrantKey(&store.Token{Hash: h, Issuer: "iss", Subject: "sub"})),
	}
	data := backup(t, s)

	dir := t.TempDir()
	if err := Restore(dir, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r := openAt(t, dir, time.Now)
	got := map[string]uint64{
		"login state": expiresAt(t, r, loginStateKey("short")),
		"token":       expiresAt(t, r, tokenKey(h)),
		"grant":       expiresAt(t, r, tokenGrantKey(&store.Token{Hash: h, Issuer: "iss", Subject: "sub"})),
	}
	for k, w := range want {
		if w == 0 || got[k] != w {
			t.Errorf("%s: restored expiry %d, want %d (non-zero)", k, got[k], w)
		}
	}
}

func TestRestoreRefusesNonEmptyDir(t *testing.T) {
	data := backup(t, openAt(t, t.TempDir(), time.Now))

	// A directory with any file in it.
	dir := t.TempDir()
	marker := filepath.Join(dir, "keep")
	if err := os.WriteFile(marker, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, bytes.NewReader(data)); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Restore into a directory with a file: got %v, want ErrNotEmpty", err)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "mine" {
		t.Fatalf("refused Restore touched the directory: %q, %v", b, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("refused Restore left %d entries, want 1", len(entries))
	}

	// A directory holding a database, closed or open.
	db := t.TempDir()
	s := openAt(t, db, time.Now)
	if err := Restore(db, bytes.NewReader(data)); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Restore into an open database: got %v, want ErrNotEmpty", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Restore(db, bytes.NewReader(data)); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Restore into a database: got %v, want ErrNotEmpty", err)
	}

	if err := Restore("", bytes.NewReader(data)); err == nil {
		t.Fatal("Restore without a directory succeeded")
	}
}

func TestRestoreFailureLeavesNothing(t *testing.T) {
	s := openAt(t, t.TempDir(), time.Now)
	seedStore(t, s, time.Now())
	data := backup(t, s)

	for _, tt := range []struct {
		name   string
		stream []byte
	}{
		{"garbage", []byte("this is not a backup stream at all")},
		{"truncated", data[:len(data)/2]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			existing := t.TempDir()
			missing := filepath.Join(t.TempDir(), "new")
			for _, dir := range []string{existing, missing} {
				if err := Restore(dir, bytes.NewReader(tt.stream)); err == nil {
					t.Fatalf("Restore(%s) of a bad stream succeeded", dir)
				}
			}
			if entries, err := os.ReadDir(existing); err != nil || len(entries) != 0 {
				t.Fatalf("failed Restore left %d entries (%v) in an existing directory", len(entries), err)
			}
			if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed Restore left the directory it created: %v", err)
			}
			// A retry with a good stream works.
			if err := Restore(existing, bytes.NewReader(data)); err != nil {
				t.Fatalf("Restore after a failed one: %v", err)
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func TestBackupStops(t *testing.T) {
	ctx := context.Background()

	t.Run("WriterError", func(t *testing.T) {
		s := openAt(t, t.TempDir(), time.Now)
		seedStore(t, s, time.Now())
		boom := errors.New("disk full")
		if err := s.Backup(ctx, errWriter{boom}); !errors.Is(err, boom) {
			t.Fatalf("Backup to a failing writer: got %v, want its error", err)
		}
		// The store is still usable.
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s := openAt(t, t.TempDir(), time.Now)
		seedStore(t, s, time.Now())
		done, cancel := context.WithCancel(ctx)
		cancel()
		var buf bytes.Buffer
		if err := s.Backup(done, &buf); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
			t.Fatalf("Backup with a cancelled context: %v, %d bytes", err, buf.Len())
		}

		mid, cancel := context.WithCancel(ctx)
		defer cancel()
		w := &hookWriter{w: &buf, hook: cancel}
		if err := s.Backup(mid, w); !errors.Is(err, context.Canceled) {
			t.Fatalf("Backup cancelled midway: got %v, want context.Canceled", err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		s := openAt(t, t.TempDir(), time.Now)
		seedStore(t, s, time.Now())
		closed := make(chan error, 1)
		w := &hookWriter{w: io.Discard, hook: func() {
			go func() { closed <- s.Close() }()
			// Close waits for the backup; the backup notices.
			for !s.closing.Load() {
				time.Sleep(time.Millisecond)
			}
		}}
		if err := s.Backup(ctx, w); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Backup during Close: got %v, want ErrClosed", err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Backup(ctx, io.Discard); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Backup after Close: got %v, want ErrClosed", err)
		}
	})
}

func TestRestoredStreamIsBadgers(t *testing.T) {
	// The stream is Badger's own format: a plain Badger database loads it.
	s := openAt(t, t.TempDir(), time.Now)
	d := seedStore(t, s, time.Now())
	data := backup(t, s)
	db, err := badgerdb.Open(badgerdb.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Load(bytes.NewReader(data), 16); err != nil {
		t.Fatal(err)
	}
	got := dump(t, db)
	if _, ok := got[string(enrollmentKey(d.enrollment.ID))]; !ok {
		t.Fatalf("plain Badger load lacks the enrollment; keys: %s", strings.Join(slices.Collect(maps.Keys(got)), ", "))
	}
}
