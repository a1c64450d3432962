package caddymodule

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// gathered is a registry's metrics, by name and then by their labels
// written as k=v,k=v in label order.
type gathered map[string]map[string]*dto.Metric

func gather(t *testing.T, reg prometheus.Gatherer) gathered {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	g := gathered{}
	for _, f := range fams {
		g[f.GetName()] = map[string]*dto.Metric{}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			g[f.GetName()][strings.Join(ls, ",")] = m
		}
	}
	return g
}

// value is a counter's or gauge's value, 0 when absent.
func (g gathered) value(name, labels string) float64 {
	m := g[name][labels]
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func newTestMetrics(t *testing.T) (*metrics, *prometheus.Registry) {
	t.Helper()
	m := newMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := m.register(reg); err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestAuditEventsCounted(t *testing.T) {
	type entry struct {
		level  zapcore.Level
		fields []zap.Field
	}
	ev := func(event string, fs ...zap.Field) entry {
		return entry{zapcore.InfoLevel, append([]zap.Field{zap.String("event", event)}, fs...)}
	}
	reason := func(r string) zap.Field { return zap.String("reason", r) }
	tests := []struct {
		name    string
		method  string
		entries []entry
		want    map[string]float64 // "name{labels}" → value
	}{
		{"discovery", methodWeb, []entry{
			ev(audit.DiscoveryAnswered, zap.String("version", "mdm-byod"), zap.String("user_identifier", "alice@example.com")),
			ev(audit.DiscoveryAnswered, zap.String("version", "mdm-adde")),
			ev(audit.DiscoveryAnswered, zap.String("version", "mdm-adde")),
			ev(audit.DiscoveryRedirected),
			ev(audit.DiscoveryRefused, reason("model family cannot enroll account-driven"), zap.Bool("not_found", false)),
			ev(audit.DiscoveryRefused, reason("unknown user"), zap.Bool("not_found", true)),
		}, map[string]float64{
			"mdm_auth_discovery_total{mode=byod,result=answered}":   1,
			"mdm_auth_discovery_total{mode=adde,result=answered}":   2,
			"mdm_auth_discovery_total{mode=none,result=redirected}": 1,
			"mdm_auth_discovery_total{mode=none,result=refused}":    1,
			"mdm_auth_discovery_total{mode=none,result=not_found}":  1,
		}},
		{"challenges and MDM requests", methodOAuth2, []entry{
			ev(audit.EnrollmentChallenged, zap.String("mode", "byod")),
			ev(audit.EnrollmentRefused, reason("expired")),
			ev(audit.EnrollmentRefused, reason("com.apple.mdmauth.mode-mismatch")), // a 403, no challenge
			ev(audit.MDMChallenged, reason("wrong_enrollment")),
			ev(audit.MDMChallenged, reason("wrong_enrollment")),
			ev(audit.MDMChallenged, reason("something new")),
			ev(audit.MDMRejected, reason("malformed_body")),
			ev(audit.MDMRejected, reason("no_enrollment_id")),
			ev(audit.MDMNotAccepted, reason("ok")),
			ev(audit.TokenBound, reason("ok")),
		}, map[string]float64{
			"mdm_auth_challenges_total{method=apple-oauth2,reason=enrollment}":       1,
			"mdm_auth_challenges_total{method=apple-oauth2,reason=expired}":          1,
			"mdm_auth_challenges_total{method=apple-oauth2,reason=wrong_enrollment}": 2,
			"mdm_auth_challenges_total{method=apple-oauth2,reason=other}":            1,
			"mdm_auth_mdm_requests_total{reason=wrong_enrollment,result=denied}":     2,
			"mdm_auth_mdm_requests_total{reason=other,result=denied}":                1,
			"mdm_auth_mdm_requests_total{reason=malformed_body,result=rejected}":     1,
			"mdm_auth_mdm_requests_total{reason=no_enrollment_id,result=rejected}":   1,
		}},
		{"sign-ins and tokens", methodWeb, []entry{
			ev(audit.SignInStarted),
			ev(audit.TokenIssued, zap.String("mode", "byod")),
			ev(audit.CodeIssued),
			ev(audit.OAuthTokenIssued),
			ev(audit.OAuthTokenRefreshed),
			ev(audit.OAuthTokenRefreshed),
			{zapcore.WarnLevel, []zap.Field{zap.String("event", audit.SignInFailed), reason("wrong_user"), zap.Int("status", 403)}},
			{zapcore.WarnLevel, []zap.Field{zap.String("event", audit.SignInFailed), reason("idp_unavailable"), zap.Int("status", 503)}},
			ev(audit.ProfileServed, zap.String("mode", "adde")),
			ev(audit.ProfileServed, zap.String("mode", "<script>")),
		}, map[string]float64{
			"mdm_auth_sign_ins_total{result=success}":         2,
			"mdm_auth_sign_ins_total{result=refused}":         1,
			"mdm_auth_sign_ins_total{result=error}":           1,
			"mdm_auth_tokens_issued_total{flow=web}":          1,
			"mdm_auth_tokens_issued_total{flow=oauth2}":       1,
			"mdm_auth_tokens_refreshed_total{}":               2,
			"mdm_auth_profiles_served_total{mode=adde}":       1,
			"mdm_auth_profiles_served_total{mode=other}":      1,
			"mdm_auth_tokens_revoked_total{reason=checkout}":  0,
			"mdm_auth_challenges_total{method=other,reason=}": 0,
		}},
		{"revocations", methodWeb, []entry{
			ev(audit.EnrollmentCheckedOut),
			ev(audit.OAuthTokenRefused, reason("refresh_reuse")),
			ev(audit.OAuthTokenRefused, reason("code_replay")),
			ev(audit.OAuthTokenRefused, reason("idp_refused")),
			ev(audit.OAuthTokenRefused, reason("refresh_expired")), // nothing revoked
			ev(audit.LogoutBackchannel, zap.Int("tokens", 2), zap.Int("families", 1)),
			ev(audit.LogoutBackchannel, zap.Int("tokens", 0), zap.Int("families", 0)),
			ev(audit.AdminGrantsRevoked, zap.Int("tokens_revoked", 3), zap.Int("families_revoked", 0)),
			ev(audit.AdminStateChanged, zap.Int("tokens_revoked", 0), zap.Int("families_revoked", 0)),
		}, map[string]float64{
			"mdm_auth_tokens_revoked_total{reason=checkout}":           1,
			"mdm_auth_tokens_revoked_total{reason=refresh_reuse}":      1,
			"mdm_auth_tokens_revoked_total{reason=code_replay}":        1,
			"mdm_auth_tokens_revoked_total{reason=idp_refused}":        1,
			"mdm_auth_tokens_revoked_total{reason=refresh_expired}":    0,
			"mdm_auth_tokens_revoked_total{reason=backchannel_logout}": 1,
			"mdm_auth_tokens_revoked_total{reason=admin}":              1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newTestMetrics(t)
			// The server logs only errors: the audit entries are counted
			// all the same, and still written where the level allows.
			core, logs := observer.New(zapcore.ErrorLevel)
			log := m.logger(zap.New(core), tt.method)
			for _, e := range tt.entries {
				if ce := log.Check(e.level, "entry"); ce != nil {
					ce.Write(e.fields...)
				}
			}
			if logs.Len() != 0 {
				t.Fatalf("%d entries written below the configured level", logs.Len())
			}
			g := gather(t, reg)
			for key, want := range tt.want {
				name, labels, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
				if got := g.value(name, labels); got != want {
					t.Errorf("%s = %v, want %v", key, got, want)
				}
			}
		})
	}
}

// TestLabelValuesAreBounded feeds entries whose reasons and modes are
// arbitrary text and checks that no series carries them.
func TestLabelValuesAreBounded(t *testing.T) {
	m, reg := newTestMetrics(t)
	log := m.logger(zap.NewNop(), "apple-as-web\"} 1\nfake")
	for _, v := range []string{"alice@example.com", "x\ny", strings.Repeat("a", 300), "{}"} {
		log.Info("e", zap.String("event", audit.MDMChallenged), zap.String("reason", v))
		log.Info("e", zap.String("event", audit.MDMRejected), zap.String("reason", v))
		log.Info("e", zap.String("event", audit.ProfileServed), zap.String("mode", v))
		log.Info("e", zap.String("event", audit.DiscoveryAnswered), zap.String("version", v))
		log.Info("e", zap.String("event", audit.OAuthTokenRefused), zap.String("reason", v))
		log.Info("e", zap.String("event", v))
	}
	m.countAllowed(token.Reason("not a reason"))
	for name, series := range gather(t, reg) {
		for labels := range series {
			for _, kv := range strings.Split(labels, ",") {
				_, v, _ := strings.Cut(kv, "=")
				if strings.ContainsAny(v, "@\n{}\"") || len(v) > 32 {
					t.Errorf("%s{%s}: unbounded label value", name, labels)
				}
			}
		}
	}
	g := gather(t, reg)
	if got := g.value("mdm_auth_challenges_total", "method=other,reason=other"); got != 4 {
		t.Errorf("challenges{other,other} = %v, want 4", got)
	}
	if got := g.value("mdm_auth_mdm_requests_total", "reason=other,result=allowed"); got != 1 {
		t.Errorf("allowed{other} = %v, want 1", got)
	}
}

func TestEventCoreWith(t *testing.T) {
	m, reg := newTestMetrics(t)
	// Fields given to With count as the entry's own.
	log := m.logger(zap.NewNop(), methodWeb).With(zap.String("event", audit.MDMChallenged))
	log.Info("challenged", zap.String("reason", "revoked"))
	log.With(zap.String("reason", "blocked")).Info("challenged")
	g := gather(t, reg)
	if a, b := g.value("mdm_auth_mdm_requests_total", "reason=revoked,result=denied"), g.value("mdm_auth_mdm_requests_total", "reason=blocked,result=denied"); a != 1 || b != 1 {
		t.Fatalf("revoked %v, blocked %v; want 1 each", a, b)
	}
}

func TestAllowedHook(t *testing.T) {
	m, reg := newTestMetrics(t)
	for _, r := range []token.Reason{token.ReasonOK, token.ReasonOK, token.ReasonCheckOut, token.ReasonMacDevice, token.ReasonOffboarding} {
		m.countAllowed(r)
	}
	g := gather(t, reg)
	for labels, want := range map[string]float64{
		"reason=ok,result=allowed": 2, "reason=checkout,result=allowed": 1,
		"reason=mac_device_channel,result=allowed": 1, "reason=offboarding,result=allowed": 1,
	} {
		if got := g.value("mdm_auth_mdm_requests_total", labels); got != want {
			t.Errorf("%s = %v, want %v", labels, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { m.countAllowed(token.ReasonOK) }); n != 0 {
		t.Errorf("countAllowed allocates %v times", n)
	}
}

func TestLimitedHook(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.countLimited(gateway.LimitSignIn)
	m.countLimited(gateway.LimitSignIn)
	m.countLimited("made-up")
	g := gather(t, reg)
	if got := g.value("mdm_auth_rate_limited_total", "limit=sign_in"); got != 2 {
		t.Errorf("rate_limited_total{limit=sign_in} = %v, want 2", got)
	}
	if got := g.value("mdm_auth_rate_limited_total", "limit="+labelOther); got != 1 {
		t.Errorf("an unknown limit counted %v times under other, want 1", got)
	}
	if n := testing.AllocsPerRun(100, func() { m.countLimited(gateway.LimitCallback) }); n != 0 {
		t.Errorf("countLimited allocates %v times", n)
	}
}

// TestRegisterTwice checks what a reload and a second handler do: the
// process-wide counters join a new config's registry, and a second
// registration in the same registry is no error; the counts carry over.
func TestRegisterTwice(t *testing.T) {
	m, reg1 := newTestMetrics(t)
	if err := m.register(reg1); err != nil {
		t.Fatalf("second handler of the config: %v", err)
	}
	m.countAllowed(token.ReasonOK)
	reg2 := prometheus.NewPedanticRegistry() // the next config's
	if err := m.register(reg2); err != nil {
		t.Fatalf("after a reload: %v", err)
	}
	m.countAllowed(token.ReasonOK)
	if got := gather(t, reg2).value("mdm_auth_mdm_requests_total", "reason=ok,result=allowed"); got != 2 {
		t.Fatalf("allowed after the reload = %v, want 2", got)
	}
	// A foreign collector of the same name is an error.
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "mdm_auth_tokens_refreshed_total", Help: "Another."})
	reg3 := prometheus.NewPedanticRegistry()
	reg3.MustRegister(other)
	if err := m.register(reg3); err == nil {
		t.Fatal("registering over a foreign collector succeeded")
	}
}

// fakeStore implements every store.Store method with zero results; a
// method added to store.Store later falls through to the nil embedded
// interface and panics.
type fakeStore struct{ store.Store }

func (fakeStore) CreateToken(context.Context, *store.Token) error { return nil }
func (fakeStore) Token(context.Context, store.Hash) (*store.Token, error) {
	return nil, store.ErrNotFound
}
func (fakeStore) UpdateToken(context.Context, store.Hash, func(*store.Token) error) (*store.Token, error) {
	return nil, nil
}
func (fakeStore) Enrollment(context.Context, string) (*store.Enrollment, error) { return nil, nil }
func (fakeStore) UpdateEnrollment(context.Context, string, func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	return nil, nil
}
func (fakeStore) Bind(context.Context, store.Hash, string, func(*store.Token, *store.Enrollment) (*store.Enrollment, error)) (*store.Token, *store.Enrollment, error) {
	return nil, nil, nil
}
func (fakeStore) Lookup(context.Context, string, store.Hash) (*store.Enrollment, *store.Token, error) {
	return nil, nil, nil
}
func (fakeStore) TokensForEnrollment(context.Context, string) ([]*store.Token, error) {
	return nil, nil
}
func (fakeStore) EnrollmentsForUser(context.Context, string, string) ([]*store.Enrollment, error) {
	return nil, nil
}
func (fakeStore) PutLoginState(context.Context, string, store.LoginState) error { return nil }
func (fakeStore) TakeLoginState(context.Context, string) (store.LoginState, error) {
	return store.LoginState{}, nil
}
func (fakeStore) Secret(context.Context, string, func() ([]byte, error)) ([]byte, error) {
	return nil, nil
}
func (fakeStore) CreateCode(context.Context, *store.Code) error { return nil }
func (fakeStore) UpdateCode(context.Context, store.Hash, func(*store.Code) error) (*store.Code, error) {
	return nil, nil
}
func (fakeStore) CreateFamily(context.Context, *store.Family) error               { return nil }
func (fakeStore) Family(context.Context, string) (*store.Family, error)           { return nil, nil }
func (fakeStore) TokensForFamily(context.Context, string) ([]*store.Token, error) { return nil, nil }
func (fakeStore) UpdateFamily(context.Context, string, func(*store.Family) error) (*store.Family, error) {
	return nil, nil
}
func (fakeStore) ScanEnrollments(context.Context, string, func(*store.Enrollment) bool) error {
	return nil
}
func (fakeStore) ScanTokens(context.Context, []byte, func(*store.Token) bool) error { return nil }
func (fakeStore) ScanFamilies(context.Context, string, func(*store.Family) bool) error {
	return nil
}
func (fakeStore) CountLoginStates(context.Context) (int, error) { return 0, nil }
func (fakeStore) TokensForUser(context.Context, string, string) ([]*store.Token, error) {
	return nil, nil
}
func (fakeStore) FamiliesForUser(context.Context, string, string) ([]*store.Family, error) {
	return nil, nil
}
func (fakeStore) Size(context.Context) (int64, error) { return 0, nil }
func (fakeStore) Ping(context.Context) error          { return nil }
func (fakeStore) Close() error                        { return nil }

// snake turns a method name into its op label: UpdateToken → update_token.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestTimedStoreTimesEveryMethod calls every method of store.Store through
// the decorator and checks that each one forwarded and left a sample under
// its op label.
func TestTimedStoreTimesEveryMethod(t *testing.T) {
	m, reg := newTestMetrics(t)
	s := m.timeStore(fakeStore{})
	v := reflect.ValueOf(s)
	iface := reflect.TypeOf((*store.Store)(nil)).Elem()
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	for i := 0; i < iface.NumMethod(); i++ {
		meth := iface.Method(i)
		fn := v.MethodByName(meth.Name)
		args := make([]reflect.Value, fn.Type().NumIn())
		for j := range args {
			if at := fn.Type().In(j); at == ctxType {
				args[j] = reflect.ValueOf(context.Background())
			} else {
				args[j] = reflect.Zero(at)
			}
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s is not forwarded to a working store (add it to fakeStore): %v", meth.Name, r)
				}
			}()
			fn.Call(args)
		}()
	}
	g := gather(t, reg)
	listed := map[string]bool{}
	for _, op := range storeOps {
		listed[op] = true
	}
	for i := 0; i < iface.NumMethod(); i++ {
		op := snake(iface.Method(i).Name)
		h := g["mdm_auth_store_operation_duration_seconds"]["op="+op]
		if h == nil || h.Histogram.GetSampleCount() != 1 {
			t.Errorf("store.Store.%s is not timed as op %q (add it to timedStore and storeOps)", iface.Method(i).Name, op)
		}
		delete(listed, op)
	}
	for op := range listed {
		t.Errorf("storeOps lists %q, which is no store.Store method", op)
	}
}

func TestTimedStoreForwardsResults(t *testing.T) {
	m, _ := newTestMetrics(t)
	s := m.timeStore(fakeStore{})
	if _, err := s.Token(context.Background(), store.Hash{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Token: %v, want the store's ErrNotFound", err)
	}
}

// countingInventory counts the store walks of inventory.Compute; block,
// when set, makes them hang until their context ends.
type countingInventory struct {
	fakeStore
	mu     sync.Mutex
	walks  int
	block  bool
	fail   error
	tokens int
}

func (c *countingInventory) ScanEnrollments(ctx context.Context, _ string, fn func(*store.Enrollment) bool) error {
	c.mu.Lock()
	c.walks++
	block, fail := c.block, c.fail
	c.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail != nil {
		return fail
	}
	fn(&store.Enrollment{ID: "a", State: store.StateActive, Mode: "byod"})
	fn(&store.Enrollment{ID: "b", State: store.StateReauth, Mode: "adde"})
	return nil
}

func (c *countingInventory) ScanTokens(_ context.Context, _ []byte, fn func(*store.Token) bool) error {
	c.mu.Lock()
	n := c.tokens
	c.mu.Unlock()
	for i := 0; i < n; i++ {
		fn(&store.Token{IssuedAt: epoch.Add(-time.Hour), ExpiresAt: epoch.Add(time.Hour)})
	}
	// Signed in 20 minutes ago, never checked in: stalled.
	fn(&store.Token{IssuedAt: epoch.Add(-20 * time.Minute), ExpiresAt: epoch.Add(time.Hour)})
	return nil
}

func (c *countingInventory) CountLoginStates(context.Context) (int, error) { return 3, nil }
func (c *countingInventory) Size(context.Context) (int64, error)           { return 4096, nil }

func (c *countingInventory) set(f func(*countingInventory)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func (c *countingInventory) walked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.walks
}

var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

func newTestGauges(t *testing.T, src *countingInventory) (*inventoryGauges, *prometheus.Registry, *observer.ObservedLogs, *time.Time) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	now := epoch
	g := newInventoryGauges(context.Background(), src, zap.New(core))
	g.now = func() time.Time { return now }
	g.timeout = 200 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	if err := registerInventory(reg, g); err != nil {
		t.Fatal(err)
	}
	// A second handler of the config registers its own: no error, and the
	// first stays in use.
	if err := registerInventory(reg, newInventoryGauges(context.Background(), src, zap.NewNop())); err != nil {
		t.Fatal(err)
	}
	return g, reg, logs, &now
}

func TestInventoryGauges(t *testing.T) {
	src := &countingInventory{tokens: 2}
	_, reg, _, now := newTestGauges(t, src)
	g := gather(t, reg)
	for key, want := range map[string]float64{
		"mdm_auth_live_tokens":                    3,
		"mdm_auth_enrollments{state=active}":      1,
		"mdm_auth_enrollments{state=reauth}":      1,
		"mdm_auth_enrollments{state=blocked}":     0,
		"mdm_auth_pending_sign_ins":               3,
		"mdm_auth_recent_sign_ins":                3,
		"mdm_auth_stalled_sign_ins":               3,
		"mdm_auth_store_size_bytes":               4096,
		"mdm_auth_inventory_timestamp_seconds":    float64(epoch.Unix()),
		"mdm_auth_live_token_families":            0,
		"mdm_auth_enrollments{state=offboarding}": 0,
		"mdm_auth_enrollments{state=removed}":     0,
	} {
		name, labels, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
		if _, ok := g[name][labels]; !ok {
			t.Errorf("%s missing", key)
		}
		if got := g.value(name, labels); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}

	// Within 30 s, scrapes reuse the counts.
	src.set(func(c *countingInventory) { c.tokens = 5 })
	*now = epoch.Add(29 * time.Second)
	if got := gather(t, reg).value("mdm_auth_live_tokens", ""); got != 3 || src.walked() != 1 {
		t.Fatalf("live tokens %v after %d walks, want the cached 3 after 1", got, src.walked())
	}
	// After 30 s, the next scrape counts again.
	*now = epoch.Add(30 * time.Second)
	if got := gather(t, reg).value("mdm_auth_live_tokens", ""); got != 6 || src.walked() != 2 {
		t.Fatalf("live tokens %v after %d walks, want 6 after 2", got, src.walked())
	}
}

func TestInventoryGaugesBoundedAndKeptOnFailure(t *testing.T) {
	src := &countingInventory{}
	_, reg, logs, now := newTestGauges(t, src)
	if got := gather(t, reg).value("mdm_auth_live_tokens", ""); got != 1 {
		t.Fatalf("live tokens %v, want 1", got)
	}

	// A store walk that hangs: the scrape returns after the timeout with
	// the previous counts.
	src.set(func(c *countingInventory) { c.block = true })
	*now = epoch.Add(time.Minute)
	start := time.Now()
	g := gather(t, reg)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("scrape took %v with a hanging store", d)
	}
	if got := g.value("mdm_auth_live_tokens", ""); got != 1 {
		t.Fatalf("live tokens %v, want the last counts", got)
	}
	if got := g.value("mdm_auth_inventory_timestamp_seconds", ""); got != float64(epoch.Unix()) {
		t.Fatalf("timestamp %v, want the last counts' %v", got, epoch.Unix())
	}

	// Failures are logged once, until counting works again.
	src.set(func(c *countingInventory) { c.block, c.fail = false, errors.New("inventory: not implemented") })
	for i := 2; i <= 4; i++ {
		*now = epoch.Add(time.Duration(i) * time.Minute)
		gather(t, reg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("failed").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := logs.FilterMessageSnippet("failed").Len(); n != 1 {
		t.Fatalf("%d failure log entries, want 1", n)
	}
	src.set(func(c *countingInventory) { c.fail = nil })
	*now = epoch.Add(5 * time.Minute)
	gather(t, reg)
	if logs.FilterMessageSnippet("works again").Len() != 1 {
		t.Fatal("recovery not logged")
	}
}

// TestMetricNames checks the Prometheus conventions: the mdm_auth_
// prefix, help on everything, _total on counters, a unit on the histogram.
func TestMetricNames(t *testing.T) {
	m, reg := newTestMetrics(t)
	if err := registerInventory(reg, newInventoryGauges(context.Background(), &countingInventory{}, zap.NewNop())); err != nil {
		t.Fatal(err)
	}
	m.countAllowed(token.ReasonOK)
	m.storeObs["token"].Observe(0.001)
	m.tokensRefreshed.Inc()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "mdm_auth_") || f.GetHelp() == "" {
			t.Errorf("%s: want the mdm_auth_ prefix and help", name)
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_HISTOGRAM:
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s has no unit", name)
			}
		case dto.MetricType_GAUGE:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("gauge %s ends in _total", name)
			}
		}
		seen++
	}
	if seen < 12 {
		t.Fatalf("%d metric families, want the counters, the histogram and the gauges", seen)
	}
}

// TestDiscoveryHandlerCounted checks that mdm_discovery, on a website of
// its own, counts its answers too.
func TestDiscoveryHandlerCounted(t *testing.T) {
	value := func(labels string) float64 {
		reg := prometheus.NewPedanticRegistry()
		if err := procMetrics.register(reg); err != nil {
			t.Fatal(err)
		}
		return gather(t, reg).value("mdm_auth_discovery_total", labels)
	}
	redirected, refused := value("mode=none,result=redirected"), value("mode=none,result=refused")
	d := provisionedDiscovery(t, validDiscovery())
	serveSite(t, d, "GET", wellKnown+"?user-identifier=alice@example.com&model-family=iPhone")
	serveSite(t, d, "GET", wellKnown+"?user-identifier=alice@example.com&model-family=iPhone")
	serveSite(t, d, "GET", wellKnown+"?user-identifier=alice@example.org&model-family=iPhone")
	if got := value("mode=none,result=redirected") - redirected; got != 2 {
		t.Errorf("redirected %v, want 2", got)
	}
	if got := value("mode=none,result=refused") - refused; got != 1 {
		t.Errorf("refused %v, want 1", got)
	}
}
