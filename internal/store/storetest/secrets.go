package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mdmauth/mdmauth/internal/store"
)

// randomSecret generates a fresh 32-byte secret, counting its calls.
func randomSecret(calls *atomic.Int32) func() ([]byte, error) {
	return func() ([]byte, error) {
		calls.Add(1)
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}
}

// mustSecret fetches a secret and fails the test on error.
func mustSecret(t *testing.T, s store.Store, name string, gen func() ([]byte, error)) []byte {
	t.Helper()
	b, err := s.Secret(context.Background(), name, gen)
	if err != nil {
		t.Fatalf("Secret(%q): %v", name, err)
	}
	if len(b) == 0 {
		t.Fatalf("Secret(%q) is empty", name)
	}
	return b
}

func testSecrets(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("CreatedOnce", func(t *testing.T) {
		s, _ := open(t, f)
		var calls atomic.Int32
		first := mustSecret(t, s, "signing", randomSecret(&calls))
		again := mustSecret(t, s, "signing", randomSecret(&calls))
		if !bytes.Equal(first, again) {
			t.Fatal("second Secret call returned different bytes")
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("gen called %d times, want 1", n)
		}
		other := mustSecret(t, s, "other", randomSecret(&calls))
		if bytes.Equal(first, other) {
			t.Fatal("two names share one secret")
		}
	})

	t.Run("GenErrorStoresNothing", func(t *testing.T) {
		s, _ := open(t, f)
		_, err := s.Secret(ctx, "signing", func() ([]byte, error) { return nil, errRefused })
		if !errors.Is(err, errRefused) {
			t.Fatalf("Secret: got %v, want the generator's error", err)
		}
		var calls atomic.Int32
		mustSecret(t, s, "signing", randomSecret(&calls))
		if n := calls.Load(); n != 1 {
			t.Fatalf("gen called %d times after a failed first attempt, want 1", n)
		}
	})

	t.Run("ConcurrentFirstCallsAgree", func(t *testing.T) {
		s, _ := open(t, f)
		const n = 20
		var (
			wg    sync.WaitGroup
			calls atomic.Int32
			start = make(chan struct{})
			got   [n][]byte
			errs  [n]error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = s.Secret(ctx, "signing", randomSecret(&calls))
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Secret call %d: %v", i, errs[i])
			}
			if len(got[i]) == 0 || !bytes.Equal(got[i], got[0]) {
				t.Fatalf("concurrent first calls returned different secrets (call %d)", i)
			}
		}
		if final := mustSecret(t, s, "signing", randomSecret(&calls)); !bytes.Equal(final, got[0]) {
			t.Fatal("stored secret differs from what concurrent callers received")
		}
	})
}
