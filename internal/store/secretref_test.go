package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mdmauth/mdmauth/internal/store"
)

// flakySecrets fails until up is set, then keeps one secret.
type flakySecrets struct {
	mu    sync.Mutex
	up    bool
	loads int
}

func (f *flakySecrets) Secret(_ context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if !f.up {
		return nil, store.ErrUnavailable
	}
	return []byte("key of " + name), nil
}

func TestSecretRefLoadsOnFirstUseAndRetries(t *testing.T) {
	f := &flakySecrets{}
	r := store.NewSecretRef(f, "k", nil)
	if r.Loaded() != nil {
		t.Fatal("loaded before any use")
	}
	for range 2 {
		if _, err := r.Get(context.Background()); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("store down: %v", err)
		}
	}
	f.mu.Lock()
	f.up = true
	f.mu.Unlock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := r.Get(context.Background()); err != nil || string(b) != "key of k" {
				t.Errorf("store back: %q, %v", b, err)
			}
		}()
	}
	wg.Wait()
	if string(r.Loaded()) != "key of k" {
		t.Fatal("not kept")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loads != 3 {
		t.Fatalf("%d loads, want 2 failed and 1 kept", f.loads)
	}
}
