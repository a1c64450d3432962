package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// UpstreamEnv is the environment variable that turns a program calling
// MaybeServeUpstream into the fast upstream: its value is the address to
// listen on. The harness starts its own executable this way, so that the
// upstream's CPU is not Caddy's and not the load generator's.
const UpstreamEnv = "MDMBENCH_UPSTREAM_LISTEN"

// UpstreamHealthPath answers 200 once the fast upstream is ready.
const UpstreamHealthPath = "/healthz"

// upstreamAnswer is what the fast upstream answers to every MDM request:
// a small command plist, as an MDM answers a poll when a command is
// queued.
var upstreamAnswer = []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Command</key>
	<dict>
		<key>RequestType</key>
		<string>ProfileList</string>
	</dict>
	<key>CommandUUID</key>
	<string>6C1F0C58-1B5E-4E7A-9B0E-3A1D2C4B5E6F</string>
</dict>
</plist>
`)

// UpstreamHandler is the fast upstream: it reads the request body and
// answers 200 with a small plist, doing nothing else.
func UpstreamHandler() http.Handler {
	length := strconv.Itoa(len(upstreamAnswer))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == UpstreamHealthPath {
			w.Write([]byte("ok\n"))
			return
		}
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 8<<20)); err != nil {
			http.Error(w, "reading body", http.StatusBadRequest)
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/xml"}
		h["Content-Length"] = []string{length}
		w.Write(upstreamAnswer)
	})
}

// MaybeServeUpstream serves the fast upstream and exits when UpstreamEnv
// is set, and returns at once otherwise. Call it first thing in main (and
// in TestMain of tests that run the harness).
func MaybeServeUpstream() {
	addr := os.Getenv(UpstreamEnv)
	if addr == "" {
		return
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           UpstreamHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	err := srv.ListenAndServe()
	fmt.Fprintf(os.Stderr, "upstream: %v\n", err)
	os.Exit(1)
}
