// Package webhook tells another system (typically the MDM's inventory) who
// owns each device: after every new binding of an enrollment to a user it
// POSTs a small signed JSON event to a configured URL. Delivery is
// asynchronous, from a bounded queue, by one worker that retries a few
// times with backoff; the request that caused the event never waits, and
// events that cannot be delivered are dropped and logged. Events never
// carry a token.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// EventBound names the event sent after a new binding.
const EventBound = "enrollment.bound"

// Defaults.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultAttempts  = 4
	DefaultBackoff   = 2 * time.Second
	DefaultQueueSize = 256
	// MinSecret is the shortest accepted signing secret, in bytes.
	MinSecret = 16
	// maxBackoff caps the doubling delay between attempts.
	maxBackoff = time.Minute
)

// Binding is the body of an enrollment.bound event: the enrollment and the
// user, Managed Apple Account, mode and device family it is now bound to.
type Binding struct {
	// Event is always EventBound; ID is unique per event (a receiver
	// uses it to recognise a retried delivery). Send sets both.
	Event string `json:"event"`
	ID    string `json:"id"`

	EnrollmentID   string `json:"enrollment_id"`
	Issuer         string `json:"iss"`
	Subject        string `json:"sub"`
	UserIdentifier string `json:"user_identifier"`
	ManagedAppleID string `json:"managed_apple_id"`
	Mode           string `json:"mode"`
	ModelFamily    string `json:"model_family"`
	Platform       string `json:"platform"`
	// At is when the binding was committed (UTC).
	At time.Time `json:"at"`
}

// Outcome of one event, reported to Config.Observe.
type Outcome string

// Outcomes.
const (
	Delivered Outcome = "delivered" // the receiver answered 2xx
	Failed    Outcome = "failed"    // every attempt failed, or the receiver refused it
	Dropped   Outcome = "dropped"   // the queue was full, or the sender was closing
)

// Config configures a Sender.
type Config struct {
	// URL receives the POSTs: https, or http to a loopback address.
	URL string
	// Secret signs each delivery (see Sign); at least MinSecret bytes.
	Secret []byte
	// Timeout bounds each attempt. Default: DefaultTimeout.
	Timeout time.Duration
	// Attempts is how often an event is tried. Default: DefaultAttempts.
	Attempts int
	// Backoff is the wait before the second attempt, doubled before each
	// further one (at most a minute). Default: DefaultBackoff.
	Backoff time.Duration
	// QueueSize bounds the events waiting for delivery; more are dropped.
	// Default: DefaultQueueSize.
	QueueSize int
	// Client sends the requests; it never follows redirects. Default: a
	// client with Go's default transport.
	Client *http.Client
	// Now, Rand and After (the backoff wait) default to time.Now,
	// crypto/rand and time.After.
	Now   func() time.Time
	Rand  io.Reader
	After func(time.Duration) <-chan time.Time
	// Log receives a warning for each event that is not delivered.
	Log *zap.Logger
	// Observe, when set, is told the outcome of each event.
	Observe func(Outcome)
}

// Sender delivers events from a bounded queue with one worker.
type Sender struct {
	cfg    Config
	url    string
	queue  chan delivery
	quit   chan struct{}
	done   chan struct{}
	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc

	mu     sync.RWMutex
	closed bool
}

type delivery struct {
	id, enrollmentID string
	body             []byte
}

// CheckURL validates a receiver URL: https, or http to a loopback address
// (localhost, 127.0.0.0/8, ::1); no user information or fragment.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("webhook: %q is not an absolute URL without credentials or fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("webhook: %q must use https (plain http only to a loopback address)", raw)
		}
	default:
		return nil, fmt.Errorf("webhook: %q must use https", raw)
	}
	return u, nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New validates cfg and starts the worker. Close stops it.
func New(cfg Config) (*Sender, error) {
	u, err := CheckURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if len(cfg.Secret) < MinSecret {
		return nil, fmt.Errorf("webhook: the secret must be at least %d bytes", MinSecret)
	}
	if cfg.Timeout < 0 || cfg.Backoff < 0 || cfg.Attempts < 0 || cfg.QueueSize < 0 {
		return nil, errors.New("webhook: timeout, backoff, attempts and queue size must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	client := http.Client{}
	if cfg.Client != nil {
		client = *cfg.Client
	}
	// A redirect is a misconfiguration, never followed: the receiver must
	// be the configured URL.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = &client
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	s := &Sender{cfg: cfg, url: u.String(), queue: make(chan delivery, cfg.QueueSize),
		quit: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Send queues an enrollment.bound event without waiting; it reports
// whether the event was queued. A full queue or a closed sender drops the
// event (logged, and reported to Observe).
func (s *Sender) Send(b Binding) bool {
	b.Event = EventBound
	var id [16]byte
	if _, err := io.ReadFull(s.cfg.Rand, id[:]); err != nil {
		s.drop(b.EnrollmentID, "", "no randomness for the event id")
		return false
	}
	b.ID = hex.EncodeToString(id[:])
	if b.At.IsZero() {
		b.At = s.cfg.Now()
	}
	b.At = b.At.UTC()
	body, err := json.Marshal(b)
	if err != nil {
		s.drop(b.EnrollmentID, b.ID, err.Error())
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.drop(b.EnrollmentID, b.ID, "the sender is closed")
		return false
	}
	select {
	case s.queue <- delivery{id: b.ID, enrollmentID: b.EnrollmentID, body: body}:
		return true
	default:
		s.drop(b.EnrollmentID, b.ID, "the queue is full")
		return false
	}
}

// Close stops accepting events and gives each queued one a last attempt
// until ctx is done; what is left then is dropped. It returns once the
// worker has stopped, with ctx's error if it had to give up.
func (s *Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if first {
		close(s.quit)
	}
	select {
	case <-s.done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel() // aborts the attempt in flight; the rest is dropped
		<-s.done
		return ctx.Err()
	}
}

func (s *Sender) run() {
	defer close(s.done)
	for {
		select {
		case d := <-s.queue:
			if !s.deliver(d) {
				s.drain(&d)
				return
			}
		case <-s.quit:
			s.drain(nil)
			return
		}
	}
}

// deliver tries d until it succeeds, fails for good or runs out of
// attempts. It returns false, without having finished d, when Close
// interrupted a backoff wait.
func (s *Sender) deliver(d delivery) bool {
	wait := s.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := s.attempt(d)
		if err == nil {
			s.observe(Delivered)
			return true
		}
		var pe *permanentError
		if errors.As(err, &pe) || attempt >= s.cfg.Attempts {
			s.fail(d, attempt, err)
			return true
		}
		select {
		case <-s.cfg.After(wait):
		case <-s.quit:
			return false
		}
		if wait *= 2; wait > maxBackoff {
			wait = maxBackoff
		}
	}
}

// drain gives pending (if any) and every queued event one last attempt,
// while Close still waits.
func (s *Sender) drain(pending *delivery) {
	last := func(d delivery) {
		if s.ctx.Err() != nil {
			s.drop(d.enrollmentID, d.id, "the sender stopped before it could be delivered")
			return
		}
		if err := s.attempt(d); err != nil {
			s.fail(d, 0, err)
			return
		}
		s.observe(Delivered)
	}
	if pending != nil {
		last(*pending)
	}
	for {
		select {
		case d := <-s.queue:
			last(d)
		default:
			return
		}
	}
}

// permanentError is a failure retrying cannot change: a 4xx other than
// 408, 425 and 429, or a redirect.
type permanentError struct{ error }

// statusError is an answer worth retrying: 408, 425, 429 or 5xx.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("receiver answered %d", e.status) }

func (s *Sender) attempt(d delivery) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(d.body))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mdmauth-webhook/1")
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, s.cfg.Now(), d.body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a credential
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c <= 299:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooEarly || c == http.StatusTooManyRequests || c >= 500:
		return &statusError{c}
	default:
		return &permanentError{&statusError{c}}
	}
}

func (s *Sender) fail(d delivery, attempts int, err error) {
	fields := []zap.Field{zap.String("event_id", d.id), zap.String("enrollment_id", d.enrollmentID), zap.String("error", err.Error())}
	if attempts > 0 {
		fields = append(fields, zap.Int("attempts", attempts))
	}
	s.cfg.Log.Warn("binding webhook not delivered; event dropped", fields...)
	s.observe(Failed)
}

func (s *Sender) drop(enrollmentID, id, why string) {
	s.cfg.Log.Warn("binding webhook event dropped", zap.String("event_id", id), zap.String("enrollment_id", enrollmentID), zap.String("reason", why))
	s.observe(Dropped)
}

func (s *Sender) observe(o Outcome) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(o)
	}
}
