package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// replayer returns a function that serves the same protected request, body
// with the bearer raw, through the gateway to a next that answers 200, as
// often as it is called: it reuses the request, its body and the response
// writer, so that it allocates nothing of its own. The function returns the
// status and ServeHTTP's error.
func replayer(e *env, body []byte, raw string) func() (int, error) {
	r := mdmRequest(body, raw)
	auth := []string{"Bearer " + raw}
	rd := bytes.NewReader(body)
	rc := io.NopCloser(rd)
	w := &discardWriter{h: http.Header{}}
	next := func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return func() (int, error) {
		rd.Reset(body)
		r.Body = rc
		r.ContentLength = int64(len(body))
		r.Header["Authorization"] = auth
		w.status = 0
		err := e.gw.ServeHTTP(w, r, next)
		return w.status, err
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.h }

func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}

func (d *discardWriter) Write(b []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(b), nil
}

// BenchmarkGuardBoundToken measures the hot path of a protected request:
// a ~1 KiB check-in with a token already bound to its enrollment, read,
// peeked, authorized against the store and handed to a no-op next.
func BenchmarkGuardBoundToken(b *testing.B) {
	e := newEnv(b)
	raw, _ := e.issue(grant("adde"))
	body := fixture(b, "checkin/adde-iphone-tokenupdate.plist")
	e.bind(raw, body)
	if en := e.enrollment(addeIPhoneUDID); en == nil || en.TokenHash != hashOf(raw) {
		b.Fatalf("token not bound: %+v", en)
	}

	serve := replayer(e, body, raw)
	logged := e.logs.Len()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		status, err := serve()
		if err != nil {
			b.Fatal(err)
		}
		if status != http.StatusOK {
			b.Fatalf("status %d, want 200", status)
		}
	}
	if n := e.logs.Len() - logged; n != 0 {
		b.Errorf("%d log entries: the hot path should log nothing", n)
	}
}
