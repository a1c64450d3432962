package soak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Request classes the observer counts answers by.
const (
	classMDM       = "mdm"       // the protected MDM path
	classToken     = "token"     // the OAuth 2 token endpoint
	classEnroll    = "enroll"    // the enrollment URL (profile requests)
	classDiscovery = "discovery" // service discovery
	classSignIn    = "sign-in"   // the gateway's other endpoints: sign-in, callback, authorize
	classProvider  = "provider"  // the OpenID provider
	classOther     = "other"
)

// classify names the class of a request URL.
func classify(u *url.URL, providerHost string) string {
	p := u.Path
	switch {
	case u.Host == providerHost:
		return classProvider
	case p == mdmPath || strings.HasPrefix(p, mdmPath+"/"):
		return classMDM
	case p == "/mdmauth/oauth2/token":
		return classToken
	case strings.HasPrefix(p, "/mdmauth/enroll"):
		return classEnroll
	case strings.HasPrefix(p, "/.well-known/"):
		return classDiscovery
	case strings.HasPrefix(p, "/mdmauth/"):
		return classSignIn
	}
	return classOther
}

// observer is the RoundTripper of every request the devices and their
// browsers send: it counts the answers by class and status and records
// every 5xx answer and every request that got no answer (transport
// errors) as an error, wherever it happens (inside a sign-in, a refresh
// or an enrollment too).
//
// Each worker of the soak has a transport of its own (the request's
// context names the worker, see withWorker), which keeps at most a
// connection or two per host: Caddy then sees a steady number of
// connections, one per worker and site, instead of a shared pool that
// grows in a burst and sheds idle connections minutes later, which would
// move its goroutine and file counts for reasons of the client's own.
type observer struct {
	next    http.RoundTripper   // setup, and requests without a worker
	workers []http.RoundTripper // by worker

	mu           sync.Mutex
	providerHost string
	counts       map[string]map[int]int64
	failures     *tally
}

func newObserver(next http.RoundTripper, workers ...http.RoundTripper) *observer {
	return &observer{next: next, workers: workers, counts: map[string]map[int]int64{}, failures: newTally()}
}

// workerKey is the context key of the worker index.
type workerKey struct{}

// withWorker marks ctx as worker w's.
func withWorker(ctx context.Context, w int) context.Context {
	return context.WithValue(ctx, workerKey{}, w)
}

// transport returns the transport of the worker ctx names.
func (o *observer) transport(ctx context.Context) http.RoundTripper {
	if w, ok := ctx.Value(workerKey{}).(int); ok && w >= 0 && w < len(o.workers) {
		return o.workers[w]
	}
	return o.next
}

// closeIdle closes the idle connections of every transport.
func (o *observer) closeIdle() {
	for _, t := range append([]http.RoundTripper{o.next}, o.workers...) {
		if c, ok := t.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// setProvider tells the observer the provider's host:port.
func (o *observer) setProvider(hostport string) {
	o.mu.Lock()
	o.providerHost = hostport
	o.mu.Unlock()
}

// RoundTrip implements http.RoundTripper.
func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	o.mu.Lock()
	class := classify(req.URL, o.providerHost)
	o.mu.Unlock()
	resp, err := o.transport(req.Context()).RoundTrip(req)
	if err != nil {
		// A run stopped by an interrupt cancels requests; that is not the
		// server's failure.
		if req.Context().Err() == nil || !errors.Is(err, context.Canceled) {
			o.failures.add(class+": transport error", "%s %s: %v", req.Method, class, err)
		}
		return resp, err
	}
	o.mu.Lock()
	m := o.counts[class]
	if m == nil {
		m = map[int]int64{}
		o.counts[class] = m
	}
	m[resp.StatusCode]++
	o.mu.Unlock()
	if resp.StatusCode >= 500 {
		o.failures.add(class+": "+strconv.Itoa(resp.StatusCode), "%s %s answered %d", req.Method, class, resp.StatusCode)
	}
	return resp, nil
}

// responses returns the counts as class → status → answers.
func (o *observer) responses() map[string]map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]map[string]int64{}
	for class, m := range o.counts {
		out[class] = map[string]int64{}
		for st, n := range m {
			out[class][strconv.Itoa(st)] = n
		}
	}
	return out
}

// maxExamples is how many error messages a tally keeps.
const maxExamples = 20

// tally counts errors by kind and keeps the first messages. Messages
// never carry a token, a code or a URL's query.
type tally struct {
	mu       sync.Mutex
	total    int64
	byKind   map[string]int64
	examples []string
}

func newTally() *tally { return &tally{byKind: map[string]int64{}} }

// add records one error of kind.
func (t *tally) add(kind, format string, args ...any) {
	msg := clip(fmt.Sprintf(format, args...), 400)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	t.byKind[kind]++
	if len(t.examples) < maxExamples {
		t.examples = append(t.examples, msg)
	}
}

// count returns the number of errors so far.
func (t *tally) count() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// summary returns the tally for the report.
func (t *tally) summary() Errors {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := Errors{Total: t.total, ByKind: map[string]int64{}, Examples: slices.Clone(t.examples)}
	for k, n := range t.byKind {
		e.ByKind[k] = n
	}
	return e
}

// Errors summarises the errors of one kind of check.
type Errors struct {
	Total    int64            `json:"total"`
	ByKind   map[string]int64 `json:"by_kind,omitempty"`
	Examples []string         `json:"examples,omitempty"`
}
