package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
)

func TestStatsAndHealth(t *testing.T) {
	e := newEnv(t)
	e.enroll("alice", "byod", "A-1")
	e.enroll("bob", "adde", "B-1")
	e.call("POST", "/mdm_auth/enrollments/B-1/block", "", http.StatusOK, nil)
	e.issue(grant("carol", "byod"))

	var s admin.Stats
	e.call("GET", "/mdm_auth/stats", "", http.StatusOK, &s)
	if s.Enrollments[store.StateActive] != 1 || s.Enrollments[store.StateBlocked] != 1 || s.Enrollments[store.StateRemoved] != 0 ||
		s.EnrollmentsByMode["byod"] != 1 || s.EnrollmentsByMode["adde"] != 1 || s.LiveTokens != 2 ||
		s.StallAfterSeconds != 15*60 || !s.At.Equal(epoch) || s.StoreBytes <= 0 {
		t.Errorf("stats %+v", s)
	}
	var h admin.Health
	e.call("GET", "/mdm_auth/health", "", http.StatusOK, &h)
	if h.Status != "ok" || h.StoreBytes <= 0 {
		t.Errorf("health %+v", h)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.call("GET", "/mdm_auth/health", "", http.StatusServiceUnavailable, &h)
	if h.Status != "unavailable" || h.Error == "" {
		t.Errorf("health of a closed store %+v", h)
	}
	e.call("GET", "/mdm_auth/stats", "", http.StatusServiceUnavailable, nil)
	e.call("GET", "/mdm_auth/enrollments", "", http.StatusServiceUnavailable, nil)
}

func TestBackupRestores(t *testing.T) {
	e := newEnv(t)
	raw := e.enroll("alice", "byod", "A-1")
	p := e.signInOAuth(grant("bob", "adde"), "")
	e.mdm(p.AccessToken, "B-1")

	res, err := e.srv.Client().Get(e.srv.URL + "/mdm_auth/backup")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("backup: %d %v", res.StatusCode, res.Header)
	}
	if res.Trailer.Get(admin.BackupTrailer) != "complete" {
		t.Fatalf("backup trailer %q, want complete", res.Trailer.Get(admin.BackupTrailer))
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := badger.Restore(dir, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	s, err := badger.Open(badger.Options{Dir: dir, Now: e.clock.Now, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	en, err := s.Enrollment(e.ctx, "A-1")
	if err != nil || en.TokenHash != hashOfRaw(raw) {
		t.Fatalf("restored enrollment %+v, %v", en, err)
	}
	if f, err := s.Family(e.ctx, p.Family.ID); err != nil || f.EnrollmentID != "B-1" {
		t.Fatalf("restored family %+v, %v", f, err)
	}
	if n := len(e.logs.FilterField(zap.String("event", audit.AdminBackup)).All()); n != 1 {
		t.Errorf("%d backup audit entries, want 1", n)
	}
}

// failingBackup is a store whose backup fails after writing some bytes.
type failingBackup struct {
	store.Store
	after int
}

func (f failingBackup) Backup(_ context.Context, w io.Writer) error {
	if f.after > 0 {
		if _, err := w.Write(bytes.Repeat([]byte{1}, f.after)); err != nil {
			return err
		}
	}
	return errors.New("disk on fire")
}

func TestBackupFailureIsNeverTakenForABackup(t *testing.T) {
	for _, after := range []int{0, 100 << 10} {
		e := newEnv(t)
		h := &admin.Handler{Source: func(context.Context) (*admin.Deployment, func(), error) {
			return &admin.Deployment{Store: failingBackup{e.store, after}}, nil, nil
		}}
		srv := httptest.NewServer(h)
		res, err := srv.Client().Get(srv.URL + "/mdm_auth/backup")
		if err != nil {
			t.Fatal(err)
		}
		_, rerr := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case after == 0 && res.StatusCode != http.StatusInternalServerError:
			t.Errorf("failure before any byte: %d, want 500", res.StatusCode)
		case after > 0 && (rerr == nil || res.Trailer.Get(admin.BackupTrailer) != ""):
			t.Errorf("failure midway: read error %v, trailer %q; want a broken stream", rerr, res.Trailer.Get(admin.BackupTrailer))
		}
		srv.Close()
	}
}

func TestRenderProfileSites(t *testing.T) {
	e := newEnv(t)
	e.put(&store.Enrollment{ID: "E", State: store.StateActive})
	post := func(q string) (int, string) {
		code, h, b := e.do("POST", "/mdm_auth/enrollments/E/profile"+q, "")
		if code == http.StatusOK && h.Get("Content-Type") != "application/x-apple-aspen-config" {
			t.Errorf("%s: Content-Type %q", q, h.Get("Content-Type"))
		}
		return code, string(b)
	}
	if code, _ := post(""); code != http.StatusServiceUnavailable {
		t.Errorf("without sites: %d, want 503", code)
	}
	e.sites = []admin.Site{{Names: []string{"mdm.example.com", "example.com"}, Profiles: fakeRenderer{name: "one"}}}
	if code, b := post(""); code != 200 || b != "profile of E at one" {
		t.Errorf("one site: %d %q", code, b)
	}
	e.sites = append(e.sites, admin.Site{Names: []string{"mdm.example.org", "example.org", "example.com"}, Profiles: fakeRenderer{name: "two"}})
	for _, tt := range []struct {
		q, want string
		code    int
	}{
		{"", "", 400},
		{"?site=MDM.example.org", "profile of E at two", 200},
		{"?site=mdm.example.com", "profile of E at one", 200},
		{"?site=example.com", "", 400},
		{"?site=other.example", "", 400},
		{"?host=x", "", 400},
	} {
		code, b := post(tt.q)
		if code != tt.code || (tt.want != "" && b != tt.want) {
			t.Errorf("%s: %d %q, want %d %q", tt.q, code, b, tt.code, tt.want)
		}
	}
	e.sites = []admin.Site{{Names: []string{"a"}, Profiles: fakeRenderer{err: errConflict}}}
	if code, _ := post(""); code != http.StatusConflict {
		t.Errorf("conflict: %d, want 409", code)
	}
	e.sites = []admin.Site{{Names: []string{"a"}, Profiles: fakeRenderer{}}}
	if code, _, _ := e.do("POST", "/mdm_auth/enrollments/missing/profile", ""); code != http.StatusNotFound {
		t.Errorf("unknown enrollment: %d, want 404", code)
	}
	if n := len(e.logs.FilterField(zap.String("event", audit.AdminProfileRendered)).All()); n != 3 {
		t.Errorf("%d profile audit entries, want 3", n)
	}
}

func TestNotRunning(t *testing.T) {
	h := &admin.Handler{Source: func(context.Context) (*admin.Deployment, func(), error) { return nil, nil, admin.ErrNotRunning }}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/mdm_auth/stats", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"error":"admin: mdm_auth is not running"`) {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	// The store stays pinned until the request is done.
	released := 0
	e := newEnv(t)
	h = &admin.Handler{Source: func(context.Context) (*admin.Deployment, func(), error) {
		return &admin.Deployment{Store: e.store}, func() { released++ }, nil
	}}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/mdm_auth/health", nil))
	if w.Code != 200 || released != 1 {
		t.Errorf("%d, released %d times", w.Code, released)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/mdm_auth/health", nil))
	if w.Code != 405 || released != 1 {
		t.Errorf("a refused method acquired the deployment: %d, released %d", w.Code, released)
	}
}
