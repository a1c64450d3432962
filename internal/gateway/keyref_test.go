package gateway_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
)

// downSecrets is a store whose secrets cannot be read until up.
type downSecrets struct {
	mu  sync.Mutex
	up  bool
	key []byte
}

func (d *downSecrets) Secret(context.Context, string, func() ([]byte, error)) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.up {
		return nil, store.ErrUnavailable
	}
	return d.key, nil
}

// With the signing key loaded on first use (a remote store), a challenge
// that cannot get its key is a 503, never a 401 without a valid link nor a
// 500; once the store answers, the same gateway challenges as usual.
func TestChallengeKeyUnavailable(t *testing.T) {
	e := newEnv(t)
	secrets := &downSecrets{key: signKey}
	signer := signin.Signer{KeyRef: store.NewSecretRef(secrets, "signin-flow-hmac", nil), MaxAge: e.signer.MaxAge}
	e2 := newEnvWithSigner(t, signer)
	for _, r := range []*http.Request{enrollRequest("byod", "", nil, ""), mdmRequest(fixture(t, "checkin/ue-idle.plist"), "")} {
		w := e2.mustServe(r, failNext(t))
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("WWW-Authenticate") != "" || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s with the key unavailable: %d, challenge %q", r.URL.Path, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	secrets.mu.Lock()
	secrets.up = true
	secrets.mu.Unlock()
	w := e2.mustServe(enrollRequest("byod", "", nil, ""), failNext(t))
	e.challengeFlow(w, origin) // the same key: e's signer reads the link
}
