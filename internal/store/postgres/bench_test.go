package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

// benchFleet is how many enrolled devices the benchmarks' store holds.
const benchFleet = 10_000

// benchHash is the hash of device i's token.
func benchHash(i int) store.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// benchStore opens a store holding benchFleet enrollments, each with its
// bound token, loaded in bulk.
func benchStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	s := openStore(b, Options{Now: func() time.Time { return now }})
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	var tokens, enrollments [][]any
	for i := range benchFleet {
		id := fmt.Sprintf("%08X-%016X", i, i*7919)
		t := &store.Token{
			Hash: benchHash(i), Issuer: "https://idp.example.com", Subject: fmt.Sprintf("user-%d", i),
			ManagedAppleID: fmt.Sprintf("user-%d@appleid.example.com", i), Mode: "byod", ModelFamily: "iPhone",
			IssuedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour), EnrollmentID: id,
		}
		args, err := s.tokenArgs(t)
		if err != nil {
			b.Fatal(err)
		}
		tokens = append(tokens, args)
		eargs, _, err := enrollmentArgs(id, &store.Enrollment{
			Issuer: t.Issuer, Subject: t.Subject, ManagedAppleID: t.ManagedAppleID, Mode: t.Mode,
			Platform: store.PlatformOther, State: store.StateActive, TokenHash: t.Hash, CreatedAt: now, UpdatedAt: now,
		})
		if err != nil {
			b.Fatal(err)
		}
		enrollments = append(enrollments, eargs)
	}
	for _, load := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"tokens", []string{"hash", "enrollment_id", "family_id", "iss", "sub", "expires_at", "revoked_at", "purge_after", "rec"}, tokens},
		{"enrollments", []string{"id", "iss", "sub", "state", "rec"}, enrollments},
	} {
		if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{s.schema, load.table}, load.cols, pgx.CopyFromRows(load.rows)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, s.q.expand("ANALYZE {s}.tokens; ANALYZE {s}.enrollments")); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkLookup measures the MDM hot path against a local PostgreSQL
// (loopback TCP) holding 10,000 enrolled devices: one Lookup of an
// enrollment and its token per operation, serially (latency: one round
// trip) and from 4 goroutines per CPU at once (throughput with the
// default pool).
func BenchmarkLookup(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	ids := make([]string, benchFleet)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08X-%016X", i, i*7919)
	}
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e, t, err := s.Lookup(ctx, ids[i%benchFleet], benchHash(i%benchFleet))
			if err != nil || e == nil || t == nil {
				b.Fatalf("Lookup = %v, %v, %v", e, t, err)
			}
			i++
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		// Requests in flight at once, as on a busy gateway; the pool
		// has its default size.
		b.SetParallelism(4)
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(next.Add(1)) % benchFleet
				e, t, err := s.Lookup(ctx, ids[i], benchHash(i))
				if err != nil || e == nil || t == nil {
					b.Errorf("Lookup = %v, %v, %v", e, t, err)
					return
				}
			}
		})
	})
}
