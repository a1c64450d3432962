package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Several gateways on one PostgreSQL database, behind a round-robin front
// (a third Caddy), must behave to every device exactly like one gateway.

// startPGLab starts a PostgreSQL server and a lab of n gateways on it
// (n = 1: a single gateway with the PostgreSQL store).
func startPGLab(t *testing.T, n int, o lab.Options) (*lab.Lab, *testenv.PG) {
	t.Helper()
	pg, err := testenv.Postgres(t)
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	o.PostgresDSN, o.Instances = pg.DSN(), n
	l, err := lab.Start(t, o)
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, g := range l.Gateways {
			t.Logf("gateway %d log:\n%s", i+1, tail(g.Caddy.Logs(), 40))
		}
		t.Logf("front/gateway log:\n%s", tail(l.Caddy.Logs(), 40))
	})
	return l, pg
}

// auditEvents counts a gateway's audit entries.
func auditEvents(g *lab.Gateway) int { return strings.Count(g.Caddy.Logs(), `"event":"`) }

// adminPost calls an action of a gateway's admin API.
func adminPost(t *testing.T, adminURL, path string) {
	t.Helper()
	resp, err := http.Post(adminURL+admin.DefaultPrefix+path, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("admin POST %s: %d %s", path, resp.StatusCode, body)
	}
}

// An enrollment whose steps the front spreads over both gateways; a
// revocation through one gateway refused by the other on the very next
// request; a new sign-in through the front working again.
func TestPostgresTwoGatewaysAsOne(t *testing.T) {
	l, _ := startPGLab(t, 2, lab.Options{})
	c := ctx(t)
	before := []int{auditEvents(l.Gateways[0]), auditEvents(l.Gateways[1])}
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	for i, g := range l.Gateways {
		if got := auditEvents(g) - before[i]; got < 2 {
			t.Errorf("gateway %d logged %d audit entries during the enrollment: the front did not spread it", i+1, got)
		}
	}
	// Both gateways honour the token, directly.
	for i, g := range l.Gateways {
		if resp := sendIdle(t, c, d, g.URL+"/mdm/ad"); resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway %d: status %d", i+1, resp.StatusCode)
		}
	}
	// Revoked through gateway 1, refused by gateway 2 at once.
	adminPost(t, l.Gateways[0].AdminURL, "/enrollments/"+url.PathEscape(d.EnrollmentKey())+"/reauth")
	for i := range l.Gateways {
		g := l.Gateways[len(l.Gateways)-1-i]
		resp := sendIdle(t, c, d, g.URL+"/mdm/ad")
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Header.Values("WWW-Authenticate")) != 1 {
			t.Fatalf("gateway %d after the revocation: status %d", len(l.Gateways)-i, resp.StatusCode)
		}
	}
	// The device signs in again through the front and carries on.
	uuid, cmd = testenv.ProfileListCommand()
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	if d.Prompts() != 1 {
		t.Fatalf("prompts = %d, want 1", d.Prompts())
	}
}

// raceTransport sends each request that match selects to every gateway
// at once, the same body and headers (a sign-in's callback with its state,
// code and cookie; a token request with its code), and hands the client
// the first success among the answers (or the last answer).
type raceTransport struct {
	base     http.RoundTripper
	gateways []*lab.Gateway
	match    func(r *http.Request, body []byte) bool
	mu       sync.Mutex
	statuses []int
}

func (rt *raceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if !rt.match(r, body) {
		return rt.base.RoundTrip(r)
	}
	resps := make([]*http.Response, len(rt.gateways))
	errs := make([]error, len(rt.gateways))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, g := range rt.gateways {
		u, err := url.Parse(g.URL)
		if err != nil {
			return nil, err
		}
		req := r.Clone(r.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.URL.Host = u.Host
		req.Host = r.URL.Host // the public host, as through the front
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resps[i], errs[i] = rt.base.RoundTrip(req)
		}()
	}
	close(start)
	wg.Wait()
	var chosen *http.Response
	for i, resp := range resps {
		if errs[i] != nil {
			return nil, errs[i]
		}
		rt.mu.Lock()
		rt.statuses = append(rt.statuses, resp.StatusCode)
		rt.mu.Unlock()
		if chosen == nil && (resp.StatusCode == http.StatusPermanentRedirect || resp.StatusCode == http.StatusOK) {
			chosen = resp
			continue
		}
		if i == len(resps)-1 && chosen == nil {
			chosen = resp
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return chosen, nil
}

// One sign-in's callback (its state, the provider's code, the browser's
// cookie) raced on both gateways: exactly one issues a token.
func TestPostgresSignInRacedOnTwoGateways(t *testing.T) {
	l, _ := startPGLab(t, 2, lab.Options{})
	c := ctx(t)
	rt := &raceTransport{base: l.HTTPClient.Transport, gateways: l.Gateways,
		match: func(r *http.Request, _ []byte) bool { return strings.HasSuffix(r.URL.Path, "/oidc/callback") }}
	client := *l.HTTPClient
	client.Transport = rt
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(cfg *device.Config) {
		cfg.Browser = &device.FormBrowser{Client: &client, Username: "alice", Password: lab.Password}
	})
	enrollAndCheckIn(t, c, d)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	won := 0
	for _, s := range rt.statuses {
		if s == http.StatusPermanentRedirect {
			won++
		}
	}
	if len(rt.statuses) != 2 || won != 1 {
		t.Fatalf("callback answers %v: want exactly one 308 of two", rt.statuses)
	}
	if got := strings.Count(l.Gateways[0].Caddy.Logs()+l.Gateways[1].Caddy.Logs(), `"event":"token.issued"`); got != 1 {
		t.Fatalf("%d tokens issued for one sign-in", got)
	}
}

// An apple-oauth2 authorization code redeemed on both gateways at once:
// at most one redemption succeeds, and the replay revokes whatever the code
// gave (RFC 6749 section 4.1.2), as on one gateway: no token family issued
// from the code stays usable. (When the replay lands before the first
// redemption stored its family, both are refused.)
func TestPostgresCodeRacedOnTwoGateways(t *testing.T) {
	l, _ := startPGLab(t, 2, lab.Options{Handler: "\t\tsign_in oauth2\n"})
	c := ctx(t)
	rt := &raceTransport{base: l.HTTPClient.Transport, gateways: l.Gateways,
		match: func(r *http.Request, body []byte) bool {
			return strings.HasSuffix(r.URL.Path, "/oauth2/token") && bytes.Contains(body, []byte("grant_type=authorization_code"))
		}}
	client := *l.HTTPClient
	client.Transport = rt
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(cfg *device.Config) {
		cfg.HTTPClient = &client
	})
	_, _ = d.Enroll(c) // the device may or may not get through: the race decides
	rt.mu.Lock()
	statuses := append([]int(nil), rt.statuses...)
	rt.mu.Unlock()
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if len(statuses) != 2 || ok > 1 {
		t.Fatalf("token endpoint answers %v: want at most one 200 of two", statuses)
	}
	logs := l.Gateways[0].Caddy.Logs() + l.Gateways[1].Caddy.Logs()
	if !strings.Contains(logs, `"reason":"code_replay"`) {
		t.Fatal("the replayed code was not recorded as code_replay")
	}
	if got := strings.Count(logs, `"event":"oauth2.token_issued"`); got != ok {
		t.Fatalf("%d token pairs issued, %d answered", got, ok)
	}
	families := 0
	if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
		return s.ScanFamilies(c, "", func(f *store.Family) bool {
			families++
			if f.RevokedAt.IsZero() || f.RevokeReason != "code_replay" {
				t.Errorf("family %s left usable after the replay (revoked %v, %q)", f.ID, f.RevokedAt, f.RevokeReason)
			}
			return true
		})
	}); err != nil {
		t.Fatal(err)
	}
	if families == 0 {
		t.Fatal("no family recorded: the replay could not have been revoked")
	}
}

// A refresh token sent to both gateways at once: both answers carry the
// same pair (a retry within the grace window), never two diverging chains.
func TestPostgresRefreshRacedOnTwoGateways(t *testing.T) {
	l, _ := startPGLab(t, 2, lab.Options{Handler: "\t\tsign_in oauth2\n"})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	refresh := d.RefreshToken()
	answers := make([]tokenAnswer, len(l.Gateways))
	var wg sync.WaitGroup
	for i, g := range l.Gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = refreshAt(t, l, g.URL, refresh)
		}()
	}
	wg.Wait()
	var pair *tokenAnswer
	for i, a := range answers {
		switch {
		case a.Status != http.StatusOK:
			t.Logf("gateway %d refused: %d %s", i+1, a.Status, a.Error)
		case pair == nil:
			pair = &answers[i]
		case a.AccessToken != pair.AccessToken || a.RefreshToken != pair.RefreshToken:
			t.Fatal("the same refresh token gave two different pairs on two gateways")
		}
	}
	if pair == nil {
		t.Fatalf("no gateway answered the refresh: %+v", answers)
	}
}

// refreshAt is refreshRaw against one gateway.
func refreshAt(t *testing.T, l *lab.Lab, base, refresh string) tokenAnswer {
	ll := *l
	ll.BaseURL = base
	return refreshRaw(t, &ll, refresh)
}

// One gateway killed while the fleet checks in: the devices carry on
// through the other, with no prompt.
func TestPostgresGatewayKilledFleetGoesOn(t *testing.T) {
	l, _ := startPGLab(t, 2, lab.Options{})
	c := ctx(t)
	var fleet []*device.Device
	for _, u := range []struct{ id, name string }{{"alice@example.com", "alice"}, {"bob@example.com", "bob"}} {
		d := newDevice(t, l, "iPhone", "iPhone17,2", u.id, u.name)
		enrollAndCheckIn(t, c, d)
		fleet = append(fleet, d)
	}
	poll := func(round int) (failed int) {
		for _, d := range fleet {
			if _, err := d.Poll(c, device.DeviceChannel); err != nil {
				failed++
				t.Logf("round %d: %v", round, withoutQueries(err.Error()))
				// A device retries a failed check-in later.
				if _, err := d.Poll(c, device.DeviceChannel); err != nil {
					t.Fatalf("round %d: the retry failed too: %v", round, withoutQueries(err.Error()))
				}
			}
		}
		return failed
	}
	for round := 0; round < 3; round++ {
		if n := poll(round); n != 0 {
			t.Fatalf("round %d before the kill: %d failures", round, n)
		}
	}
	if err := l.Gateways[1].Caddy.Kill(); err != nil {
		t.Fatal(err)
	}
	failures := 0
	for round := 3; round < 10; round++ {
		failures += poll(round)
	}
	for i, d := range fleet {
		if d.Prompts() != 0 {
			t.Fatalf("device %d prompted %d times", i+1, d.Prompts())
		}
	}
	if failures > len(fleet) {
		t.Fatalf("%d failed check-ins after the kill: the front kept sending to the dead gateway", failures)
	}
}

// The database stopped under a running fleet: devices get 503 (never a
// challenge, which would prompt every user), sign-in shows its
// "temporarily unavailable" page; when the database is back everything
// recovers without a restart or a prompt.
func TestPostgresOutage503ThenRecover(t *testing.T) {
	l, pg := startPGLab(t, 2, lab.Options{})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, g := range l.Gateways {
		resp := sendIdle(t, c, d, g.URL+"/mdm/ad")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("WWW-Authenticate") != "" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("gateway %d with the database down: status %d, challenge %q, Retry-After %q", i+1, resp.StatusCode,
				resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Retry-After"))
		}
	}
	newcomer := newDevice(t, l, "iPhone", "iPhone15,3", "bob@example.com", "bob")
	_, err := newcomer.Enroll(c)
	requireSignInUnavailable(t, err)

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, g := range l.Gateways {
		for {
			resp := sendIdle(t, c, d, g.URL+"/mdm/ad")
			if resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("after the database came back: status %d", resp.StatusCode)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d", d.Prompts())
	}
	newcomer = newDevice(t, l, "iPhone", "iPhone15,3", "bob@example.com", "bob")
	enrollAndCheckIn(t, c, newcomer)
}

// A Badger store moved to PostgreSQL with caddy mdm-auth migrate-store:
// the enrolled devices carry on with their tokens, new ones enroll.
func TestPostgresMigrationFromBadger(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	pg, err := testenv.Postgres(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mdm-auth", "migrate-store", "--from-dir", l.StorageDir, "--to-postgres")
	cmd.Env = append(cmd.Environ(), "MDMAUTH_PG_DSN="+pg.DSN())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("migrate-store: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "migrated 1 tokens, 1 enrollments, 0 token families") {
		t.Fatalf("migrate-store said: %s", out.String())
	}
	// Migrating again into the same database is refused.
	again := exec.Command(bin, "mdm-auth", "migrate-store", "--from-dir", l.StorageDir, "--to-postgres")
	again.Env = cmd.Env
	if b, err := again.CombinedOutput(); err == nil || !strings.Contains(string(b), "already holds records") {
		t.Fatalf("a second migration: %v\n%s", err, b)
	}
	if err := l.SwitchToPostgres(pg.DSN(), ""); err != nil {
		t.Fatal(err)
	}
	uuid, cmdb := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmdb, uuid)
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d after the migration", d.Prompts())
	}
	if !strings.Contains(l.Caddy.Logs(), `"backend":"postgres"`) {
		t.Fatal("Caddy does not run on the PostgreSQL store")
	}
	enrollAndCheckIn(t, c, newDevice(t, l, "iPhone", "iPhone15,3", "bob@example.com", "bob"))
}

// Caddy starts while the database is down (it loads its keys on first
// use): discovery answers, the enrollment and sign-in answer 503, and once
// the database is up the device enrolls without a restart.
func TestPostgresCaddyStartsWithDatabaseDown(t *testing.T) {
	pg, err := testenv.Postgres(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := lab.Start(t, lab.Options{PostgresDSN: pg.DSN()})
	if err != nil {
		t.Fatalf("Caddy did not start with the database down: %v", err)
	}
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	if _, _, err := d.Discover(c); err != nil {
		t.Fatalf("discovery with the database down: %v", err)
	}
	req, err := http.NewRequest(http.MethodPost, l.BaseURL+"/mdmauth/enroll/byod", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := l.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("enrollment with the database down: %d, challenge %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	enrollAndCheckIn(t, c, d)
}
