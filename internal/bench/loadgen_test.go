package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		keep   bool
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", 204, true},
		{"chunked", "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nWWW-Authenticate: Bearer method=\"apple-as-web\", url=\"https://x/\"\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n", 401, true},
		{"close", "HTTP/1.1 503 Service Unavailable\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nno", 503, false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nbody until the end", 200, false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The next answer follows on the same connection.
			r := bufio.NewReader(strings.NewReader(tc.in + "NEXT"))
			status, keep, err := readResponse(r)
			if err != nil || status != tc.status || keep != tc.keep {
				t.Fatalf("readResponse = %d, %v, %v; want %d, %v", status, keep, err, tc.status, tc.keep)
			}
			if rest, _ := io.ReadAll(r); tc.keep && string(rest) != "NEXT" {
				t.Errorf("left %q unread, want NEXT", rest)
			}
		})
	}
	for _, bad := range []string{"", "HTTP/2 200\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"} {
		if _, _, err := readResponse(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readResponse(%q) succeeded", bad)
		}
	}
}

// testFleet sends fixed requests to path.
type testFleet struct{ idle, result []byte }

func (f testFleet) Len() int { return 3 }
func (f testFleet) Request(_ []byte, _ int, result bool) []byte {
	if result {
		return f.result
	}
	return f.idle
}

func newTestFleet(host string) testFleet {
	req := func(kind string) []byte {
		return []byte("PUT /mdm/ad HTTP/1.1\r\nHost: " + host + "\r\nX-Kind: " + kind + "\r\nContent-Length: 4\r\n\r\nbody")
	}
	return testFleet{idle: req("idle"), result: req("result")}
}

// countingServer answers 200 except for requests marked "result" when
// refuse is set, counting what it saw.
func countingServer(t *testing.T, refuse bool) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var idle, results atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Kind") == "result" {
			results.Add(1)
			if refuse {
				w.Header().Set("WWW-Authenticate", `Bearer method="apple-as-web", url="https://x/"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		} else {
			idle.Add(1)
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &idle, &results
}

func tlsTarget(srv *httptest.Server) Target {
	return Target{Addr: srv.Listener.Addr().String(), TLS: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}
}

func TestRunLoadClosedLoop(t *testing.T) {
	srv, idle, results := countingServer(t, true)
	tgt := tlsTarget(srv)
	res, err := RunLoad(context.Background(), tgt, LoadSpec{Fleet: newTestFleet(tgt.Addr), Connections: 4,
		Duration: 5 * time.Second, MaxRequests: 400, ResultShare: 0.25, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.Latency.Count() != 400 || res.Elapsed >= 5*time.Second {
		t.Fatalf("requests %d, answered %d in %v; want the 400-request bound to end the run", res.Requests, res.Latency.Count(), res.Elapsed)
	}
	if int64(res.OK) != idle.Load() || res.Errors["401"] != uint64(results.Load()) || res.ErrorCount() != res.Errors["401"] {
		t.Errorf("ok %d errors %v; server saw %d idle, %d results", res.OK, res.Errors, idle.Load(), results.Load())
	}
	if share := float64(results.Load()) / 400; share < 0.15 || share > 0.35 {
		t.Errorf("result share %.2f, want about 0.25", share)
	}
	if res.Rate() <= 0 || res.Latency.Quantile(0.5) <= 0 {
		t.Errorf("rate %v, p50 %v", res.Rate(), res.Latency.Quantile(0.5))
	}
}

func TestRunLoadOpenLoopKeepsTheRate(t *testing.T) {
	srv, idle, _ := countingServer(t, false)
	tgt := tlsTarget(srv)
	const rate, d = 200.0, 1500 * time.Millisecond
	res, err := RunLoad(context.Background(), tgt, LoadSpec{Fleet: newTestFleet(tgt.Addr), Connections: 4, Duration: d, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	want := rate * d.Seconds()
	if got := float64(idle.Load()); got < 0.9*want || got > want+1 {
		t.Errorf("server saw %v requests, want about %v", got, want)
	}
	if len(res.Errors) != 0 || res.OK != uint64(idle.Load()) {
		t.Errorf("errors %v ok %d", res.Errors, res.OK)
	}
}

func TestRunLoadCountsTransportErrors(t *testing.T) {
	// A server that closes every connection after reading a request.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				bufio.NewReader(c).ReadString('\n')
				c.Close()
			}()
		}
	}()
	addr := ln.Addr().String()
	res, err := RunLoad(context.Background(), Target{Addr: addr}, LoadSpec{Fleet: newTestFleet(addr), Connections: 2, Duration: time.Second, MaxRequests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 20 || res.Errors[ErrorTransport] != 20 || res.OK != 0 || res.Latency.Count() != 0 {
		t.Errorf("requests %d errors %v ok %d", res.Requests, res.Errors, res.OK)
	}
}

func TestRunLoadRefusesBadSpecs(t *testing.T) {
	for _, s := range []LoadSpec{{}, {Fleet: testFleet{}, Duration: time.Second}, {Fleet: testFleet{}, Connections: 1}} {
		if _, err := RunLoad(context.Background(), Target{Addr: "127.0.0.1:1"}, s); err == nil {
			t.Errorf("RunLoad(%+v) succeeded", s)
		}
	}
	_, err := RunLoad(context.Background(), Target{Addr: "127.0.0.1:1"}, LoadSpec{Fleet: testFleet{}, Connections: 1, Duration: time.Second})
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("unreachable server: %v, want a dial error", err)
	}
}
