package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/webhook"
)

var (
	secret = []byte("0123456789abcdef-webhook-secret")
	epoch  = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
)

// received is one request the test receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a loopback HTTP server answering with the statuses of
// answers in turn (the last one repeats), after waiting on gate when set.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []int
	gate    chan struct{}
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	rc := &receiver{answers: answers}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		n := len(rc.got)
		gate := rc.gate
		rc.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		status := http.StatusNoContent
		if len(rc.answers) > 0 {
			status = rc.answers[min(n, len(rc.answers))-1]
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "https://elsewhere.example.com/")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// outcomes records what Observe was told.
type outcomes struct {
	mu   sync.Mutex
	list []webhook.Outcome
	ch   chan webhook.Outcome
}

func newOutcomes() *outcomes { return &outcomes{ch: make(chan webhook.Outcome, 100)} }

func (o *outcomes) observe(x webhook.Outcome) {
	o.mu.Lock()
	o.list = append(o.list, x)
	o.mu.Unlock()
	o.ch <- x
}

func (o *outcomes) next(t *testing.T) webhook.Outcome {
	t.Helper()
	select {
	case x := <-o.ch:
		return x
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome reported")
		return ""
	}
}

// waits records the backoff waits and lets them pass at once.
type waits struct {
	mu   sync.Mutex
	list []time.Duration
}

func (w *waits) after(d time.Duration) <-chan time.Time {
	w.mu.Lock()
	w.list = append(w.list, d)
	w.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- epoch
	return ch
}

func (w *waits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.list...)
}

func newSender(t *testing.T, url string, edit func(*webhook.Config)) (*webhook.Sender, *outcomes, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	out := newOutcomes()
	cfg := webhook.Config{
		URL: url, Secret: secret,
		Now:     func() time.Time { return epoch },
		Log:     zap.New(core),
		Observe: out.observe,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, out, logs
}

var binding = webhook.Binding{
	EnrollmentID:   "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
	Issuer:         "https://idp.example.com",
	Subject:        "u-alice",
	UserIdentifier: "alice@example.com",
	ManagedAppleID: "alice@appleid.example.com",
	Mode:           "byod",
	ModelFamily:    "iPhone",
	Platform:       "other",
	At:             epoch.Add(-time.Second),
}

func TestDeliversOneSignedEvent(t *testing.T) {
	rc := newReceiver(t)
	s, out, _ := newSender(t, rc.URL+"/hooks/bound", nil)
	if !s.Send(binding) {
		t.Fatal("Send refused the event")
	}
	if o := out.next(t); o != webhook.Delivered {
		t.Fatalf("outcome %q", o)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	sig := r.header.Get(webhook.SignatureHeader)
	if !strings.HasPrefix(sig, "t=1930367167,v1=") {
		t.Errorf("signature header %q", sig)
	}
	if err := webhook.Verify(secret, sig, r.body, epoch.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("the receiver cannot verify the delivery: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"at", "enrollment_id", "event", "id", "iss", "managed_apple_id", "mode", "model_family", "platform", "sub", "user_identifier"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v, want exactly %v (never a token)", keys, want)
	}
	for k, v := range map[string]string{
		"event": "enrollment.bound", "enrollment_id": binding.EnrollmentID, "iss": binding.Issuer, "sub": "u-alice",
		"user_identifier": "alice@example.com", "managed_apple_id": "alice@appleid.example.com", "mode": "byod",
		"model_family": "iPhone", "platform": "other", "at": "2031-03-04T05:06:06Z",
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %q", k, got[k], v)
		}
	}
	if id, _ := got["id"].(string); len(id) != 32 {
		t.Errorf("id %q, want 32 hex digits", id)
	}
}

func TestEventIDsDiffer(t *testing.T) {
	rc := newReceiver(t)
	s, out, _ := newSender(t, rc.URL, nil)
	s.Send(binding)
	s.Send(binding)
	out.next(t)
	out.next(t)
	ids := map[string]bool{}
	for _, r := range rc.requests() {
		var b webhook.Binding
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		ids[b.ID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("event ids %v, want two different ones", ids)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		answers  []int
		attempts int
		waits    []time.Duration
		outcome  webhook.Outcome
	}{
		{"succeeds on the third attempt", []int{503, 500, 200}, 3, []time.Duration{2 * time.Second, 4 * time.Second}, webhook.Delivered},
		{"429 and 408 are retried", []int{429, 408, 202}, 3, []time.Duration{2 * time.Second, 4 * time.Second}, webhook.Delivered},
		{"gives up after four attempts", []int{502}, 4, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}, webhook.Failed},
		{"a 4xx is final", []int{400}, 1, nil, webhook.Failed},
		{"a redirect is not followed", []int{302}, 1, nil, webhook.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.answers...)
			w := &waits{}
			s, out, logs := newSender(t, rc.URL, func(c *webhook.Config) { c.After = w.after })
			s.Send(binding)
			if o := out.next(t); o != tt.outcome {
				t.Fatalf("outcome %q, want %q", o, tt.outcome)
			}
			reqs := rc.requests()
			if len(reqs) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(reqs), tt.attempts)
			}
			for _, r := range reqs {
				if !bytes.Equal(r.body, reqs[0].body) {
					t.Fatal("a retry sent another body")
				}
			}
			if got := w.get(); len(got) != len(tt.waits) || len(got) > 0 && got[len(got)-1] != tt.waits[len(tt.waits)-1] {
				t.Fatalf("backoff waits %v, want %v", got, tt.waits)
			}
			dropped := logs.FilterMessage("binding webhook not delivered; event dropped").All()
			if (tt.outcome == webhook.Failed) != (len(dropped) == 1) {
				t.Fatalf("drop log entries: %d", len(dropped))
			}
			for _, e := range logs.All() {
				if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), string(secret)) {
					t.Fatal("the secret reached the log")
				}
			}
		})
	}
}

func TestUnreachableReceiverIsRetried(t *testing.T) {
	rc := newReceiver(t)
	url := rc.URL
	rc.Close() // nothing listens there any more
	w := &waits{}
	s, out, logs := newSender(t, url+"/?key=credential", func(c *webhook.Config) { c.After = w.after; c.Attempts = 2 })
	s.Send(binding)
	if o := out.next(t); o != webhook.Failed {
		t.Fatalf("outcome %q", o)
	}
	if len(w.get()) != 1 {
		t.Fatalf("waits %v, want one between two attempts", w.get())
	}
	e := logs.FilterMessage("binding webhook not delivered; event dropped").All()
	if len(e) != 1 || strings.Contains(e[0].ContextMap()["error"].(string), "credential") {
		t.Fatalf("drop entries %v (the URL, which may hold a credential, must not be logged)", e)
	}
}

func TestQueueOverflowDropsWithoutBlocking(t *testing.T) {
	rc := newReceiver(t)
	rc.gate = make(chan struct{})
	s, out, logs := newSender(t, rc.URL, func(c *webhook.Config) { c.QueueSize = 2 })

	// The worker takes the first event and hangs in the receiver; two more
	// fill the queue.
	if !s.Send(binding) {
		t.Fatal("first event refused")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker never reached the receiver")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		if !s.Send(binding) {
			t.Fatalf("event %d refused with room in the queue", i+2)
		}
	}
	start := time.Now()
	for i := 0; i < 50; i++ {
		if s.Send(binding) {
			t.Fatal("an event was queued past the queue size")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("dropping 50 events took %v: Send blocked", d)
	}
	for i := 0; i < 50; i++ {
		if o := out.next(t); o != webhook.Dropped {
			t.Fatalf("outcome %q, want dropped", o)
		}
	}
	if n := logs.FilterMessage("binding webhook event dropped").Len(); n != 50 {
		t.Fatalf("%d drop log entries, want 50", n)
	}
	close(rc.gate)
	for i := 0; i < 3; i++ {
		if o := out.next(t); o != webhook.Delivered {
			t.Fatalf("outcome %q, want delivered", o)
		}
	}
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("%d deliveries, want 3", n)
	}
}

func TestCloseDeliversQueuedEvents(t *testing.T) {
	rc := newReceiver(t, 503, 204)
	block := make(chan time.Time) // the backoff wait never ends by itself
	s, out, _ := newSender(t, rc.URL, func(c *webhook.Config) {
		c.After = func(time.Duration) <-chan time.Time { return block }
	})
	s.Send(binding) // fails once, then waits for its retry
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no first attempt")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Send(binding)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if o1, o2 := out.next(t), out.next(t); o1 != webhook.Delivered || o2 != webhook.Delivered {
		t.Fatalf("outcomes %q %q: the waiting and the queued event get a last attempt", o1, o2)
	}
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if s.Send(binding) {
		t.Fatal("Send accepted an event after Close")
	}
	if o := out.next(t); o != webhook.Dropped {
		t.Fatalf("outcome after Close %q", o)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseGivesUpAtItsDeadline(t *testing.T) {
	rc := newReceiver(t)
	rc.gate = make(chan struct{}) // the receiver never answers
	t.Cleanup(func() { close(rc.gate) })
	s, out, _ := newSender(t, rc.URL, func(c *webhook.Config) { c.Timeout = time.Minute })
	s.Send(binding)
	s.Send(binding)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	got := map[webhook.Outcome]int{}
	got[out.next(t)]++
	got[out.next(t)]++
	if got[webhook.Delivered] != 0 || got[webhook.Failed]+got[webhook.Dropped] != 2 {
		t.Fatalf("outcomes %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
	}{
		{"plain http to another host", webhook.Config{URL: "http://mdm.example.com/hook", Secret: secret}},
		{"no scheme", webhook.Config{URL: "mdm.example.com/hook", Secret: secret}},
		{"ftp", webhook.Config{URL: "ftp://mdm.example.com/hook", Secret: secret}},
		{"credentials in the URL", webhook.Config{URL: "https://user:pw@mdm.example.com/hook", Secret: secret}},
		{"short secret", webhook.Config{URL: "https://mdm.example.com/hook", Secret: []byte("short")}},
		{"negative attempts", webhook.Config{URL: "https://mdm.example.com/hook", Secret: secret, Attempts: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := webhook.New(tt.cfg); err == nil {
				_ = s.Close(context.Background())
				t.Fatal("accepted")
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://mdm.example.com/hooks/bound": true,
		"http://127.0.0.1:8080/hook":          true,
		"http://127.9.9.9/hook":               true,
		"http://[::1]:9000/hook":              true,
		"http://localhost/hook":               true,
		"http://10.0.0.1/hook":                false,
		"http://mdm.example.com/hook":         false,
		"https://mdm.example.com/hook#frag":   false,
		"/relative":                           false,
	} {
		if _, err := webhook.CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q): %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"event":"enrollment.bound"}`)
	good := webhook.Sign(secret, epoch, body)
	other := webhook.Sign([]byte("another secret of enough length"), epoch, body)
	tests := []struct {
		name   string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", good, body, epoch, nil},
		{"valid within tolerance", good, body, epoch.Add(4 * time.Minute), nil},
		{"rotated secrets: one matches", other + "," + strings.TrimPrefix(good, "t=1930367167,"), body, epoch, nil},
		{"body changed", good, []byte(`{"event":"enrollment.bound "}`), epoch, webhook.ErrBadSignature},
		{"other secret", other, body, epoch, webhook.ErrBadSignature},
		{"timestamp changed", strings.Replace(good, "t=1930367167", "t=1930367168", 1), body, epoch, webhook.ErrBadSignature},
		{"too old", good, body, epoch.Add(6 * time.Minute), webhook.ErrStale},
		{"from the future", good, body, epoch.Add(-6 * time.Minute), webhook.ErrStale},
		{"empty", "", body, epoch, webhook.ErrNoSignature},
		{"no v1", "t=1930367167", body, epoch, webhook.ErrNoSignature},
		{"malformed v1", "t=1930367167,v1=zz", body, epoch, webhook.ErrNoSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := webhook.Verify(secret, tt.header, tt.body, tt.now, 5*time.Minute); !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
		})
	}
}
