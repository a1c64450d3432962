package store

import (
	"context"
	"sync"
	"sync/atomic"
)

// SecretRef is one of the gateway's secrets, read from a store on first
// use and then kept: with a remote store, the gateway provisions and
// starts while the database is down, and loads its keys once it answers.
// A failed load is tried again by the next use.
type SecretRef struct {
	load func(ctx context.Context) ([]byte, error)
	v    atomic.Pointer[[]byte]
	mu   sync.Mutex // one load at a time
}

// NewSecretRef returns a SecretRef that loads the secret name from s,
// creating it with gen on first use (Secrets.Secret).
func NewSecretRef(s Secrets, name string, gen func() ([]byte, error)) *SecretRef {
	return &SecretRef{load: func(ctx context.Context) ([]byte, error) { return s.Secret(ctx, name, gen) }}
}

// Get returns the secret, loading it on first use.
func (r *SecretRef) Get(ctx context.Context) ([]byte, error) {
	if v := r.v.Load(); v != nil {
		return *v, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.v.Load(); v != nil {
		return *v, nil
	}
	b, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	r.v.Store(&b)
	return b, nil
}

// Loaded returns the secret if it was loaded, else nil; it never loads.
func (r *SecretRef) Loaded() []byte {
	if v := r.v.Load(); v != nil {
		return *v
	}
	return nil
}
