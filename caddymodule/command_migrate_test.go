package caddymodule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
)

func TestMigrateStore(t *testing.T) {
	ctx := context.Background()
	open := func() *badger.Store {
		s, err := badger.Open(badger.Options{Dir: t.TempDir(), GCInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src := open()
	now := time.Now()
	for i := byte(1); i <= 3; i++ {
		if err := src.CreateToken(ctx, &store.Token{Hash: store.Hash{i}, Issuer: "https://idp.example.com", Subject: "alice", Mode: "byod", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{ID: "E1", State: store.StateActive, Issuer: "https://idp.example.com", Subject: "alice", CreatedAt: now, UpdatedAt: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := src.CreateFamily(ctx, &store.Family{ID: "fam-0123456789ab", Issuer: "https://idp.example.com", Subject: "alice", ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	key, err := src.Secret(ctx, "signin-flow-hmac", func() ([]byte, error) { return []byte("0123456789abcdef0123456789abcdef"), nil })
	if err != nil {
		t.Fatal(err)
	}
	dst := open()
	n, err := migrateStore(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n[store.KindToken] != 3 || n[store.KindEnrollment] != 1 || n[store.KindFamily] != 1 || n[store.KindSecret] != 1 {
		t.Fatalf("counts %v", n)
	}
	if _, err := dst.Token(ctx, store.Hash{2}); err != nil {
		t.Fatalf("token not migrated: %v", err)
	}
	if e, err := dst.Enrollment(ctx, "E1"); err != nil || e.State != store.StateActive {
		t.Fatalf("enrollment: %+v, %v", e, err)
	}
	got, err := dst.Secret(ctx, "signin-flow-hmac", func() ([]byte, error) { return []byte("a new key would break every link"), nil })
	if err != nil || string(got) != string(key) {
		t.Fatalf("secret not carried: %q, %v", got, err)
	}
	// A destination holding anything is refused, and left as it was.
	if _, err := migrateStore(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "already holds records") {
		t.Fatalf("second migration: %v", err)
	}
}

func TestEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := emptyDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := emptyDir(dir + "/absent"); err != nil {
		t.Fatal(err)
	}
	s, err := badger.Open(badger.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := emptyDir(dir); err == nil {
		t.Fatal("a store directory passed as empty")
	}
}
