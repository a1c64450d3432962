package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Faults of the parts around the gateway, each with the real parts: what
// the device sees while the part is broken, what the store holds, and
// that everything recovers without a new sign-in or a restart of Caddy.

// sendIdle sends d's Status Idle to url with d's token, without the
// emulator's checks and 401 handling.
func sendIdle(t *testing.T, c context.Context, d *device.Device, url string) *http.Response {
	t.Helper()
	resp, _, err := d.Send(c, url, idleBody(d), device.SendOptions{ContentType: device.CommandContentType})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestFaultUpstreamMDMDown stops NanoMDM under an enrolled device and a
// device whose token is not bound yet: both get the reverse proxy's 502,
// never a challenge, and nothing about their tokens changes. When NanoMDM
// is back (empty: it keeps its state in memory) both devices check in again
// with the tokens they hold, without signing in again.
func TestFaultUpstreamMDMDown(t *testing.T) {
	l := startFaultLab(t, lab.Options{})
	c := ctx(t)
	bound := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, bound)
	fresh := newDevice(t, l, "iPad", "iPad16,3", "bob@example.com", "bob")
	if _, err := fresh.Enroll(c); err != nil { // a token, not bound yet
		t.Fatal(err)
	}
	boundToken, freshToken := bound.Token(), fresh.Token()
	enrBefore, ok := enrollmentView(t, l, bound.EnrollmentKey())
	if !ok || enrBefore.State != store.StateActive || enrBefore.TokenID != tokenID(boundToken) {
		t.Fatalf("enrollment before the outage: %+v (found %v)", enrBefore, ok)
	}
	tokBefore := tokenView(t, l, boundToken)

	if err := l.NanoMDM.Stop(); err != nil {
		t.Fatal(err)
	}
	resp := sendIdle(t, c, bound, p.ServerURL)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("MDM request while NanoMDM is down: %d, challenge %q; want 502 without a challenge",
			resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	var he *device.HTTPError
	if _, err := bound.Poll(c, device.DeviceChannel); !errors.As(err, &he) || he.Status != http.StatusBadGateway {
		t.Fatalf("enrolled device's poll while NanoMDM is down: %v; want 502", err)
	}
	if err := bound.TokenUpdate(c, device.DeviceChannel); !errors.As(err, &he) || he.Status != http.StatusBadGateway {
		t.Fatalf("enrolled device's TokenUpdate while NanoMDM is down: %v; want 502", err)
	}
	if err := fresh.Authenticate(c, device.DeviceChannel); !errors.As(err, &he) || he.Status != http.StatusBadGateway {
		t.Fatalf("new device's Authenticate while NanoMDM is down: %v; want 502", err)
	}
	if bound.Prompts()+fresh.Prompts() != 0 {
		t.Fatalf("a device was asked to sign in during the outage (prompts %d, %d)", bound.Prompts(), fresh.Prompts())
	}

	// The store is as it was: the enrolled device's binding and token
	// untouched, the new device's token still unbound and no enrollment
	// recorded for it.
	if enr, ok := enrollmentView(t, l, bound.EnrollmentKey()); !ok || !sameJSON(t, enr, enrBefore) {
		t.Errorf("enrollment after the outage:\n%+v\nwant\n%+v", enr, enrBefore)
	}
	if tok := tokenView(t, l, boundToken); !sameJSON(t, tok, tokBefore) {
		t.Errorf("token after the outage:\n%+v\nwant\n%+v", tok, tokBefore)
	}
	if tok := tokenView(t, l, freshToken); tok.EnrollmentID != "" || tok.State != admin.TokenLive {
		t.Errorf("the new device's token after a refused Authenticate: bound to %q, %s", tok.EnrollmentID, tok.State)
	}
	if enr, ok := enrollmentView(t, l, fresh.EnrollmentKey()); ok {
		t.Errorf("an enrollment was recorded for a check-in NanoMDM never saw: %+v", enr)
	}

	// NanoMDM is back with no memory of the devices: they check in again,
	// with the tokens they hold.
	if err := l.NanoMDM.Start(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*device.Device{bound, fresh} {
		if err := d.Authenticate(c, device.DeviceChannel); err != nil {
			t.Fatalf("Authenticate after the outage: %v", err)
		}
		if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
			t.Fatalf("TokenUpdate after the outage: %v", err)
		}
		uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
		runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	}
	if bound.Prompts()+fresh.Prompts() != 0 || bound.Token() != boundToken || fresh.Token() != freshToken {
		t.Fatalf("recovery took a sign-in (prompts %d, %d)", bound.Prompts(), fresh.Prompts())
	}
	if tok := tokenView(t, l, freshToken); tok.EnrollmentID != fresh.EnrollmentKey() {
		t.Errorf("the new device's token is bound to %q after the outage, want %q", tok.EnrollmentID, fresh.EnrollmentKey())
	}
}

// sameJSON reports whether a and b encode to the same JSON: two views of
// one record, compared field by field.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// TestFaultCaddyKilledDuringSignInBurst kills Caddy with SIGKILL while
// many devices sign in at once, the moment the third access token reaches
// its device, and starts it again on the same store. Every device that
// received a token gets its profile and checks in with it, without
// signing in again; the others start over and succeed; and every record
// in the store reads back and is found through its indexes.
func TestFaultCaddyKilledDuringSignInBurst(t *testing.T) {
	const devices, killAt = 10, 3
	users := make([]testenv.User, devices)
	for i := range users {
		name := fmt.Sprintf("user%02d", i)
		users[i] = testenv.User{ID: "u-" + name, Username: name, Password: lab.Password, FirstName: "User", LastName: name,
			Email: name + "@example.com", EmailVerified: true, PreferredLanguage: "en"}
	}
	l := startFaultLab(t, lab.Options{Users: users})
	c := ctx(t)

	var (
		mu       sync.Mutex
		received = map[int]string{} // device → the token that reached it
		tokens   atomic.Int32
		killed   = make(chan error, 1)
	)
	ds := make([]*device.Device, devices)
	for i := range ds {
		cfg, err := l.DeviceConfig("iPhone", "iPhone17,2", users[i].Email, users[i].Username)
		if err != nil {
			t.Fatal(err)
		}
		form := cfg.Browser
		cfg.Browser = browserFunc(func(ctx context.Context, u string) (string, error) {
			cb, err := form.SignIn(ctx, u)
			if err != nil {
				return cb, err
			}
			if tok, err := device.ParseSignInCallback(cb); err == nil {
				mu.Lock()
				received[i] = tok
				mu.Unlock()
				if tokens.Add(1) == killAt {
					// Before this device can use its token, with the
					// other sign-ins in flight.
					killed <- l.Caddy.Kill()
				}
			}
			return cb, err
		})
		if ds[i], err = device.New(cfg); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, devices)
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { _, errs[i] = d.Enroll(c) })
	}
	wg.Wait()
	select {
	case err := <-killed:
		if err != nil {
			t.Fatalf("killing caddy: %v", err)
		}
	default:
		t.Fatalf("only %d tokens were issued in the burst; caddy was never killed (errors: %s)", tokens.Load(), withoutQueries(fmt.Sprint(errs)))
	}
	mu.Lock()
	burst := maps.Clone(received) // the sign-ins of devices starting over come later
	mu.Unlock()
	if err := l.Caddy.Start(); err != nil {
		t.Fatalf("caddy does not start again on the store it was killed over: %v", err)
	}

	resumed, restarted := 0, 0
	for i, d := range ds {
		tok, ok := burst[i]
		switch {
		case ok && errs[i] == nil:
			if d.Token() != tok {
				t.Fatalf("device %d enrolled with a token other than the one it received", i)
			}
		case ok:
			resumeEnrollment(t, c, l, d, tok)
			resumed++
		default:
			if errs[i] == nil {
				t.Fatalf("device %d enrolled without receiving a token", i)
			}
			if _, err := d.Enroll(c); err != nil {
				t.Fatalf("device %d starting over after the crash: %s", i, withoutQueries(err.Error()))
			}
			restarted++
		}
		if err := d.Authenticate(c, device.DeviceChannel); err != nil {
			t.Fatalf("device %d Authenticate: %v", i, err)
		}
		if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
			t.Fatalf("device %d TokenUpdate: %v", i, err)
		}
		if _, err := d.Poll(c, device.DeviceChannel); err != nil {
			t.Fatalf("device %d poll: %v", i, err)
		}
		if d.Prompts() != 0 || (ok && d.Token() != tok) {
			t.Fatalf("device %d needed a new sign-in after the crash (prompts %d)", i, d.Prompts())
		}
	}
	if resumed == 0 {
		t.Fatal("no device was left holding a token without its profile")
	}
	t.Logf("%d tokens reached their devices before the crash (%d without the profile); %d devices started over",
		len(burst), resumed, restarted)

	// Every record reads back, and each device's token and enrollment are
	// found by hash, by enrollment and by user.
	if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
		var hashes []store.Hash
		if err := s.ScanTokens(c, nil, func(tk *store.Token) bool { hashes = append(hashes, tk.Hash); return true }); err != nil {
			return fmt.Errorf("scanning tokens: %w", err)
		}
		for _, h := range hashes {
			if _, err := s.Token(c, h); err != nil {
				return fmt.Errorf("token %s listed but not readable: %w", h.ID(), err)
			}
		}
		var enrollments []*store.Enrollment
		if err := s.ScanEnrollments(c, "", func(e *store.Enrollment) bool { enrollments = append(enrollments, e); return true }); err != nil {
			return fmt.Errorf("scanning enrollments: %w", err)
		}
		for _, e := range enrollments {
			if _, _, err := s.Lookup(c, e.ID, e.TokenHash); err != nil {
				return fmt.Errorf("enrollment %s listed but not readable: %w", e.ID, err)
			}
		}
		if err := s.ScanFamilies(c, "", func(*store.Family) bool { return true }); err != nil {
			return fmt.Errorf("scanning token families: %w", err)
		}
		if _, err := s.CountLoginStates(c); err != nil {
			return fmt.Errorf("counting pending sign-ins: %w", err)
		}
		if len(enrollments) != devices {
			t.Errorf("%d enrollments in the store, want %d", len(enrollments), devices)
		}
		for i, d := range ds {
			h := token.HashOf(d.Token())
			if !slices.Contains(hashes, h) {
				t.Errorf("device %d: its token is not in the token scan", i)
			}
			e, tk, err := s.Lookup(c, d.EnrollmentKey(), h)
			if err != nil || e == nil || tk == nil || e.State != store.StateActive || e.TokenHash != h || tk.EnrollmentID != d.EnrollmentKey() {
				t.Errorf("device %d: lookup %v, enrollment %+v, token %+v", i, err, e, tk)
				continue
			}
			mine, err := s.EnrollmentsForUser(c, l.OIDC.Issuer, users[i].ID)
			if err != nil || !slices.ContainsFunc(mine, func(x *store.Enrollment) bool { return x.ID == d.EnrollmentKey() }) {
				t.Errorf("device %d: not among its user's enrollments (%v)", i, err)
			}
			issued, err := s.TokensForUser(c, l.OIDC.Issuer, users[i].ID)
			if err != nil || !slices.ContainsFunc(issued, func(x *store.Token) bool { return x.Hash == h }) {
				t.Errorf("device %d: its token is not among its user's tokens (%v)", i, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFaultReloadUnderSteadyLoad reloads Caddy with a changed
// configuration several times while enrolled devices poll without pause:
// every request is answered 200 by NanoMDM, the store is opened once and
// shared by every configuration, and the new configuration is in force.
func TestFaultReloadUnderSteadyLoad(t *testing.T) {
	const reloads = 4
	l := startFaultLab(t, lab.Options{AccessTokenTTL: "24h"})
	c := ctx(t)
	var ds []*device.Device
	for _, spec := range [][3]string{
		{"iPhone", "iPhone17,2", "alice"}, {"iPad", "iPad16,3", "alice"},
		{"iPhone", "iPhone15,3", "bob"}, {"iPad", "iPad14,1", "bob"},
	} {
		d := newDevice(t, l, spec[0], spec[1], spec[2]+"@example.com", spec[2])
		enrollAndCheckIn(t, c, d)
		ds = append(ds, d)
	}
	extraPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(l.Caddy.CaddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	base := string(raw)
	if !strings.Contains(base, "access_token_ttl 24h") {
		t.Fatalf("the lab's Caddyfile has no access_token_ttl 24h:\n%s", base)
	}

	// A request the old configuration's socket drops unread (Caddy binds
	// each configuration's listener with SO_REUSEPORT, and closing one
	// resets the connections still queued on it; or an idle kept-alive
	// connection closed as a request goes out) gets no answer at all: the
	// device sends it again, as it does on any dropped connection. What
	// must never happen is an answer other than NanoMDM's 200.
	var (
		mu       sync.Mutex
		failures []string
		answered = make([]atomic.Int64, len(ds))
		dropped  atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for i, d := range ds {
		idle, err := d.PrepareIdle(device.DeviceChannel)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var resp *http.Response
				for attempt := 1; ; attempt++ {
					req, err := idle.Request(c)
					if err != nil {
						fail("device %d: %v", i, err)
						return
					}
					if resp, err = l.HTTPClient.Do(req); err == nil {
						break
					}
					if attempt == 5 {
						fail("device %d: no answer after %d attempts: %v", i, attempt, err)
						return
					}
					dropped.Add(1)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail("device %d: %d %s", i, resp.StatusCode, tail(string(body), 3))
					continue
				}
				answered[i].Add(1)
			}
		})
	}
	// progress waits until every device had n more requests answered.
	progress := func(n int64) {
		t.Helper()
		want := make([]int64, len(ds))
		for i := range want {
			want[i] = answered[i].Load() + n
		}
		deadline := time.Now().Add(time.Minute)
		for i := range want {
			for answered[i].Load() < want[i] {
				if time.Now().After(deadline) {
					close(stop)
					wg.Wait()
					t.Fatalf("device %d made no progress (failures: %q)", i, failures)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	progress(3)
	for r := 1; r <= reloads; r++ {
		cf := strings.Replace(base, "access_token_ttl 24h", fmt.Sprintf("access_token_ttl %dh", ttlHours(r)), 1) +
			fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\trespond \"config %d\"\n}\n", extraPort, r)
		if err := l.Caddy.Reload(cf); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("reload %d: %v", r, err)
		}
		progress(3)
	}
	close(stop)
	wg.Wait()
	total := int64(0)
	for i := range answered {
		total += answered[i].Load()
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across %d reloads; first: %q", len(failures), total+int64(len(failures)), reloads, failures[:min(len(failures), 5)])
	}
	t.Logf("%d requests answered 200 across %d reloads (%d sent again after the connection dropped them unanswered)", total, reloads, dropped.Load())

	logs := l.Caddy.Logs()
	for _, bad := range []string{"store unavailable", "directory lock", "store: closed", "opening token store", "panic"} {
		if strings.Contains(logs, bad) {
			t.Errorf("caddy's log reports %q", bad)
		}
	}
	opened, shared := 0, 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"token store ready"`) {
			switch {
			case strings.Contains(line, `"shared":false`):
				opened++
			case strings.Contains(line, `"shared":true`):
				shared++
			}
		}
	}
	if opened != 1 || shared != reloads {
		t.Errorf("the store was opened %d times and joined %d times over %d reloads; want opened once and joined by each", opened, shared, reloads)
	}
	var h admin.Health
	if st := adminCall(t, l, http.MethodGet, "health", &h); st != http.StatusOK || h.Status != "ok" {
		t.Errorf("store health after the reloads: %d %+v", st, h)
	}
	// The last configuration is the one in force, writing to the store.
	d := newDevice(t, l, "iPhone", "iPhone16,1", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	// Lifetimes are jittered by ±10%; each configuration doubles the last.
	want := time.Duration(ttlHours(reloads)) * time.Hour
	if tk := tokenView(t, l, d.Token()); tk.ExpiresAt.Sub(tk.IssuedAt) < want*9/10 || tk.ExpiresAt.Sub(tk.IssuedAt) > want*11/10 {
		t.Errorf("a token issued after the reloads lives %s, want %s ±10%%", tk.ExpiresAt.Sub(tk.IssuedAt), want)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", extraPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprintf("config %d", reloads) {
		t.Errorf("the reloaded site answers %q", body)
	}
}

// ttlHours is the access_token_ttl of the configuration loaded by reload
// r (0: the first).
func ttlHours(r int) int { return 24 << r }

// TestFaultTwoSitesShareOneStore serves the gateway on two sites with one
// storage_dir: a device enrolled through either site is honoured on both,
// and a revocation through the admin API is in force on both at once.
func TestFaultTwoSitesShareOneStore(t *testing.T) {
	port2, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	site2 := fmt.Sprintf("https://localhost:%d", port2)
	l := startFaultLab(t, lab.Options{ExtraRedirectURIs: []string{site2 + "/mdmauth/oidc/callback"}})
	c := ctx(t)
	raw, err := os.ReadFile(l.Caddy.CaddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	block, err := siteBlock(string(raw), l.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Caddy.Reload(string(raw) + "\n" + site2 + strings.TrimPrefix(block, l.BaseURL)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Caddy.Logs(), `"shared":true`) {
		t.Fatal("the configuration with two sites did not join the open store")
	}

	one := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, one)
	two := newDeviceWith(t, l, "iPad", "iPad16,3", "bob@example.com", "bob", func(cfg *device.Config) { cfg.DiscoveryBase = site2 })
	if _, base, err := two.Discover(c); err != nil || !strings.HasPrefix(base, site2+"/") {
		t.Fatalf("discovery at the second site: %q, %v", base, err)
	}
	enrollAndCheckIn(t, c, two) // signed in at the second site; its profile names the first
	sites := []string{l.BaseURL + "/mdm/ad", site2 + "/mdm/ad"}
	want := func(d *device.Device, status int) {
		t.Helper()
		for _, u := range sites {
			resp := sendIdle(t, c, d, u)
			if resp.StatusCode != status || (status == http.StatusUnauthorized && len(resp.Header.Values("WWW-Authenticate")) != 1) {
				t.Fatalf("%s at %s: %d, want %d", d.EnrollmentKey(), u, resp.StatusCode, status)
			}
		}
	}
	want(one, http.StatusOK)
	want(two, http.StatusOK)

	for _, d := range []*device.Device{one, two} {
		var res admin.RevokeResult
		if st := adminCall(t, l, http.MethodPost, "tokens/"+tokenID(d.Token())+"/revoke", &res); st != http.StatusOK {
			t.Fatalf("admin revoke: status %d", st)
		}
		want(d, http.StatusUnauthorized)
	}
	// Each signs in again at the site its profile names and is honoured
	// on both.
	poll(t, c, one, 1)
	poll(t, c, two, 1)
	want(one, http.StatusOK)
	want(two, http.StatusOK)
}

// TestFaultIdPDownAtStart starts Caddy while the identity provider is
// down: Caddy starts, discovery answers, a sign-in gets the gateway's 503
// page and leaves nothing in the store; once the provider is back, the
// device enrolls without Caddy being restarted.
func TestFaultIdPDownAtStart(t *testing.T) {
	l := startFaultLab(t, lab.Options{})
	c := ctx(t)
	if err := l.Caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := l.OIDC.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := l.Caddy.Start(); err != nil {
		t.Fatalf("caddy does not start while the identity provider is down: %v", err)
	}
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	if version, _, err := d.Discover(c); err != nil || version != "mdm-byod" {
		t.Fatalf("discovery while the identity provider is down: %q, %v", version, err)
	}
	_, err := d.Enroll(c)
	requireSignInUnavailable(t, err)
	if s := stats(t, l); s.PendingSignIns != 0 || s.LiveTokens != 0 {
		t.Fatalf("a failed sign-in left %d pending sign-ins and %d tokens", s.PendingSignIns, s.LiveTokens)
	}

	if err := l.OIDC.Restart(); err != nil {
		t.Fatal(err)
	}
	// The user tries again until the gateway's wait before asking the
	// provider again has passed; meanwhile only the same page is shown.
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		_, err := d.Enroll(c)
		if err == nil {
			t.Logf("enrolled at attempt %d after the provider returned", attempt)
			break
		}
		requireSignInUnavailable(t, err)
		if time.Now().After(deadline) {
			t.Fatalf("no sign-in succeeded %s after the provider returned", 30*time.Second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, l); s.LiveTokens != 1 || s.Enrollments[store.StateActive] != 1 {
		t.Fatalf("after the enrollment: %d live tokens, %d active enrollments", s.LiveTokens, s.Enrollments[store.StateActive])
	}
}

// TestFaultIdPDownDuringSignIn stops the identity provider after the user
// signed in there and before the browser comes back to the gateway: the
// code cannot be redeemed, the device's browser shows the gateway's 503
// page, and no token is issued. Once the provider is back the next
// sign-in succeeds.
func TestFaultIdPDownDuringSignIn(t *testing.T) {
	l := startFaultLab(t, lab.Options{})
	c := ctx(t)
	var stopErr error
	browser := beforeCallbackBrowser(l, "alice", func() { stopErr = l.OIDC.Stop() })
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(cfg *device.Config) { cfg.Browser = browser })
	_, err := d.Enroll(c)
	if stopErr != nil {
		t.Fatal(stopErr)
	}
	requireSignInUnavailable(t, err)
	if d.Token() != "" {
		t.Fatal("the device holds a token")
	}
	var tokens admin.TokenList
	if st := adminCall(t, l, http.MethodGet, "tokens", &tokens); st != http.StatusOK || len(tokens.Tokens) != 0 {
		t.Fatalf("tokens after the failed sign-in: %d %+v", st, tokens.Tokens)
	}
	if s := stats(t, l); s.PendingSignIns != 0 || s.LiveTokens != 0 {
		t.Fatalf("the failed sign-in left %d pending sign-ins and %d tokens", s.PendingSignIns, s.LiveTokens)
	}

	if err := l.OIDC.Restart(); err != nil { // new signing key, sessions forgotten
		t.Fatal(err)
	}
	if _, err := d.Enroll(c); err != nil {
		t.Fatalf("enrolling once the provider is back: %s", withoutQueries(err.Error()))
	}
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, l); s.LiveTokens != 1 || s.Enrollments[store.StateActive] != 1 {
		t.Fatalf("after the enrollment: %d live tokens, %d active enrollments", s.LiveTokens, s.Enrollments[store.StateActive])
	}
}

// TestFaultIdPHangsDuringSignIn puts a server that accepts connections and
// never answers in the identity provider's place after the user signed in:
// the gateway gives up on the code exchange and shows its 503 page, with
// no token issued, instead of holding the browser until it gives up. Once
// the provider is back the next sign-in succeeds.
func TestFaultIdPHangsDuringSignIn(t *testing.T) {
	l := startFaultLab(t, lab.Options{})
	c := ctx(t)
	var (
		silent  *silentServer
		hookErr error
	)
	t.Cleanup(func() {
		if silent != nil {
			silent.Close()
		}
	})
	browser := beforeCallbackBrowser(l, "alice", func() {
		if hookErr = l.OIDC.Stop(); hookErr == nil {
			silent, hookErr = listenSilently(fmt.Sprintf(":%d", l.OIDC.Port))
		}
	})
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(cfg *device.Config) { cfg.Browser = browser })
	_, err := d.Enroll(c)
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	requireSignInUnavailable(t, err)
	if silent.Accepted() == 0 {
		t.Fatal("the gateway never called the hanging provider")
	}
	if s := stats(t, l); s.PendingSignIns != 0 || s.LiveTokens != 0 {
		t.Fatalf("the failed sign-in left %d pending sign-ins and %d tokens", s.PendingSignIns, s.LiveTokens)
	}

	silent.Close()
	if err := l.OIDC.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Enroll(c); err != nil {
		t.Fatalf("enrolling once the provider is back: %s", withoutQueries(err.Error()))
	}
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, l); s.LiveTokens != 1 || s.Enrollments[store.StateActive] != 1 {
		t.Fatalf("after the enrollment: %d live tokens, %d active enrollments", s.LiveTokens, s.Enrollments[store.StateActive])
	}
}
