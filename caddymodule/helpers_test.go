package caddymodule

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdmauth/mdmauth/internal/store/badger"
)

// exampleProfile is the enrollment profile template shipped in examples/.
const exampleProfile = "../examples/enroll.mobileconfig"

// copyProfile copies the example enrollment profile into dir and returns
// the copy's path.
func copyProfile(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(exampleProfile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "enroll.mobileconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// errNoSecret is returned by the generator of storeSecret: the secret must
// already be in the store.
var errNoSecret = errors.New("secret not in the store")

// openReleased opens the Badger store in dir directly, which Badger only
// allows when no one else holds it, so it fails the test if a config still
// has the store open. It returns whether the sign-in signing key (written at
// the handler's first provisioning) is present, and closes the store.
func openReleased(t *testing.T, dir string) (hasSigningKey bool) {
	t.Helper()
	s, err := badger.Open(badger.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatalf("the store in %s is still held: %v", dir, err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	}()
	key, err := s.Secret(context.Background(), "signin-flow-hmac", func() ([]byte, error) { return nil, errNoSecret })
	switch {
	case errors.Is(err, errNoSecret):
		return false
	case err != nil:
		t.Fatalf("reading the signing key: %v", err)
	}
	if len(key) != 32 {
		t.Errorf("signing key is %d bytes, want 32", len(key))
	}
	return true
}
