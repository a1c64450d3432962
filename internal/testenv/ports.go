package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FreePort returns a port that was free a moment ago for TCP and UDP on
// every interface (Caddy binds its HTTP ports on all of them, and HTTP/3 on
// UDP). It is taken below the kernel's ephemeral range, so that the
// outgoing connections of busy tests running at the same time (which take
// ephemeral ports) cannot grab it before the server binds it, and never
// twice in one process.
func FreePort() (int, error) {
	lo, hi := 10000, ephemeralStart()-1
	for i := 0; i < 200 && hi-lo > 1000; i++ {
		p := lo + rand.IntN(hi-lo+1)
		if _, dup := handedOut.LoadOrStore(p, true); dup {
			continue
		}
		if bindable(p) {
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// handedOut holds the ports FreePort returned.
var handedOut sync.Map

// bindable reports whether port p is free for TCP and UDP on every
// interface.
func bindable(p int) bool {
	addr := ":" + strconv.Itoa(p)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux: /proc/sys/net/ipv4/ip_local_port_range; otherwise 32768, the
// lowest start common systems use).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 2048 {
		return 32768
	}
	return n
}

// probeClient is used for readiness checks only. It does not verify TLS certificates: it asks
// "does something answer", not "is it trusted".
var probeClient = &http.Client{
	Timeout: 5 * time.Second,
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe only
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// probeAny succeeds when url answers with any HTTP status.
func probeAny(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := probeGet(ctx, url)
		return err
	}
}

// probeOK succeeds when url answers 200.
func probeOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		code, err := probeGet(ctx, url)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", url, code)
		}
		return nil
	}
}

// probeGet issues one GET and returns the status code.
func probeGet(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}
