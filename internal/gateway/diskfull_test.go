package gateway_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// With the store's disk full, issuing fails closed with ErrNoSpace (the
// sign-in answers 503), while devices holding bound tokens keep working:
// validating a token only reads.
func TestDiskFullValidationGoesOn(t *testing.T) {
	dir, err := testenv.Tmpfs(t, 160<<20)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvAt(t, filepath.Join(dir, "store"))
	raw, _ := e.issue(grant("byod"))
	e.bind(raw, fixture(t, "checkin/ue-tokenupdate.plist"))
	if _, err := testenv.Fill(dir, 16<<20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.tokens.Issue(e.ctx, grant("byod")); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("issuing on a full disk: %v, want ErrNoSpace", err)
	}
	for i, msg := range []string{"ue-idle.plist", "ue-tokenupdate.plist"} {
		n := &recNext{status: http.StatusOK}
		w := e.mustServe(mdmRequest(fixture(t, "checkin/"+msg), raw), n.serve)
		if w.Code != http.StatusOK || len(n.calls) != 1 {
			t.Fatalf("request %d with a bound token on a full disk: status %d, %d calls", i, w.Code, len(n.calls))
		}
	}
}
