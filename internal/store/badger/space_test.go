package badger

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

func TestSpaceGuard(t *testing.T) {
	free := func(n uint64, err error) func(string) (uint64, error) {
		return func(string) (uint64, error) { return n, err }
	}
	g := newSpaceGuard("/var/lib/mdmauth", 0)
	if g.min != DefaultMinFreeSpace || g.free == nil {
		t.Fatalf("default guard %+v", g)
	}
	for _, tt := range []struct {
		name string
		free func(string) (uint64, error)
		want bool // refused
	}{
		{"plenty", free(1<<30, nil), false},
		{"exactly the reserve", free(DefaultMinFreeSpace, nil), false},
		{"below", free(DefaultMinFreeSpace-1, nil), true},
		{"full", free(0, nil), true},
		{"unknown", free(0, errors.New("statfs failed")), false},
	} {
		g.free = tt.free
		err := g.check()
		if (err != nil) != tt.want || err != nil && (!errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "/var/lib/mdmauth")) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if g := newSpaceGuard("x", -1); g.check() != nil || g.free != nil {
		t.Error("a negative reserve does not disable the check")
	}
}

// On a full disk the store fails closed: every write is refused with
// ErrNoSpace before Badger's memory-mapped log could take the process
// down, reads and lookups go on, and writes resume once space is back.
func TestDiskFullRefusesWritesKeepsReads(t *testing.T) {
	dir, err := testenv.Tmpfs(t, 160<<20)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	s, err := Open(Options{Dir: filepath.Join(dir, "store"), Now: func() time.Time { return now }, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tok := func(b byte) *store.Token {
		return &store.Token{Hash: store.Hash{b}, Issuer: "https://idp.example.com", Subject: "alice", Mode: "byod",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), EnrollmentID: "E1"}
	}
	if err := s.CreateToken(ctx, tok(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{ID: "E1", State: store.StateActive, Issuer: "https://idp.example.com", Subject: "alice", CreatedAt: now, UpdatedAt: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// 16 MiB free: under the 64 MiB reserve, yet room enough that writes
	// without the guard would still succeed here.
	filler, err := testenv.Fill(dir, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	err = s.CreateToken(ctx, tok(2))
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("write on a full disk: %v, want ErrNoSpace with the free space", err)
	}
	if _, err := s.UpdateToken(ctx, store.Hash{1}, func(t *store.Token) error { t.RevokedAt = now; return nil }); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("update on a full disk: %v", err)
	}
	if _, err := s.Token(ctx, store.Hash{2}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused write left a record: %v", err)
	}
	e, got, err := s.Lookup(ctx, "E1", store.Hash{1})
	if err != nil || e == nil || got == nil || !got.RevokedAt.IsZero() {
		t.Fatalf("lookup on a full disk: %v, %+v, %+v", err, e, got)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping on a full disk: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok(2)); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
}
