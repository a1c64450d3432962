package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/webhook"
)

// hookSecret signs the binding webhook's events in the lab.
const hookSecret = "lab-binding-webhook-secret-0123456789"

// hookReceiver is the MDM inventory's end of the binding webhook.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []hookEvent
	got    chan struct{}
}

type hookEvent struct {
	signature string
	body      []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	hr := &hookReceiver{got: make(chan struct{}, 16)}
	hr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/hooks/bound" {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		hr.mu.Lock()
		hr.events = append(hr.events, hookEvent{r.Header.Get(webhook.SignatureHeader), b})
		hr.mu.Unlock()
		hr.got <- struct{}{}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hr.Close)
	return hr
}

func (hr *hookReceiver) received() []hookEvent {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return append([]hookEvent(nil), hr.events...)
}

// scrape reads Caddy's admin /metrics: series (name{labels}, as
// exposed) → value.
func scrape(t *testing.T, l *lab.Lab) map[string]float64 {
	t.Helper()
	resp, err := http.Get(l.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: status %d", resp.StatusCode)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series
}

// TestMetricsAndBindingWebhook runs an enrollment, its check-ins and a
// refused stolen-token request, then reads Caddy's metrics endpoint and
// the webhook receiver: the counters show exactly those events, the
// gauges the store's contents, and the receiver got one signed binding
// event. After a reload the counters carry on.
func TestMetricsAndBindingWebhook(t *testing.T) {
	hr := newHookReceiver(t)
	l, err := lab.Start(t, lab.Options{Handler: fmt.Sprintf("\t\tbinding_webhook %s/hooks/bound {\n\t\t\tsecret %s\n\t\t\ttimeout 2s\n\t\t}\n", hr.URL, hookSecret)})
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(l.Caddy.Logs(), 60))
		}
	})
	c := ctx(t)
	start := time.Now()
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, d)

	// A thief presents alice's token on an enrollment of their own.
	forged := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>EnrollmentID</key><string>0E8C5C7A-9B1D-4F2E-8A3B-5C6D7E8F9A0B</string><key>Status</key><string>Idle</string></dict></plist>
`)
	resp, _, err := d.Send(c, p.ServerURL, forged, device.SendOptions{Bearer: d.Token()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stolen token: status %d, want 401", resp.StatusCode)
	}

	// The binding reaches the inventory once, signed, without a token.
	select {
	case <-hr.got:
	case <-time.After(30 * time.Second):
		t.Fatal("no binding webhook event")
	}
	time.Sleep(500 * time.Millisecond) // room for a wrong second event
	events := hr.received()
	if len(events) != 1 {
		t.Fatalf("%d webhook events, want exactly 1", len(events))
	}
	ev := events[0]
	if err := webhook.Verify([]byte(hookSecret), ev.signature, ev.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("webhook signature: %v (header %q)", err, ev.signature)
	}
	if strings.Contains(string(ev.body), d.Token()) {
		t.Fatal("the webhook event carries the access token")
	}
	var got map[string]any
	if err := json.Unmarshal(ev.body, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"event": "enrollment.bound", "enrollment_id": d.EnrollmentKey(), "iss": l.OIDC.Issuer, "sub": "u-alice",
		"user_identifier": "alice@example.com", "managed_apple_id": "alice@example.com", "mode": "byod",
		"model_family": "iPhone", "platform": "other",
	} {
		if got[k] != want {
			t.Errorf("webhook %s = %v, want %q", k, got[k], want)
		}
	}
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["at"]))
	if err != nil || at.Before(start.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("webhook at = %v (%v), want the binding's time", got["at"], err)
	}

	wantCounters := map[string]float64{
		`mdm_auth_discovery_total{mode="byod",result="answered"}`:                    1,
		`mdm_auth_challenges_total{method="apple-as-web",reason="enrollment"}`:       1,
		`mdm_auth_challenges_total{method="apple-as-web",reason="wrong_enrollment"}`: 1,
		`mdm_auth_sign_ins_total{result="success"}`:                                  1,
		`mdm_auth_sign_ins_total{result="refused"}`:                                  0,
		`mdm_auth_tokens_issued_total{flow="web"}`:                                   1,
		`mdm_auth_tokens_issued_total{flow="oauth2"}`:                                0,
		`mdm_auth_profiles_served_total{mode="byod"}`:                                1,
		`mdm_auth_mdm_requests_total{reason="ok",result="allowed"}`:                  2,
		`mdm_auth_mdm_requests_total{reason="wrong_enrollment",result="denied"}`:     1,
		`mdm_auth_binding_webhook_events_total{result="delivered"}`:                  1,
		`mdm_auth_store_operation_duration_seconds_count{op="bind"}`:                 1,
		`mdm_auth_store_operation_duration_seconds_bucket{op="bind",le="+Inf"}`:      1,
		`mdm_auth_store_operation_duration_seconds_count{op="create_token"}`:         1,
		`mdm_auth_mdm_requests_total{reason="mac_device_channel",result="allowed"}`:  0,
		`mdm_auth_tokens_refreshed_total`:                                            0,
		`mdm_auth_mdm_requests_total{reason="checkout",result="allowed"}`:            0,
		`mdm_auth_mdm_requests_total{reason="offboarding",result="allowed"}`:         0,
	}
	wantGauges := map[string]float64{
		`mdm_auth_live_tokens`:                      1,
		`mdm_auth_live_token_families`:              0,
		`mdm_auth_enrollments{state="active"}`:      1,
		`mdm_auth_enrollments{state="reauth"}`:      0,
		`mdm_auth_enrollments{state="blocked"}`:     0,
		`mdm_auth_enrollments{state="offboarding"}`: 0,
		`mdm_auth_enrollments{state="removed"}`:     0,
		`mdm_auth_pending_sign_ins`:                 0,
		`mdm_auth_recent_sign_ins`:                  1,
		`mdm_auth_stalled_sign_ins`:                 0,
	}
	check := func(when string, series map[string]float64, want map[string]float64) {
		t.Helper()
		for k, v := range want {
			got, ok := series[k]
			if !ok && v != 0 {
				t.Errorf("%s: %s missing", when, k)
				continue
			}
			if got != v {
				t.Errorf("%s: %s = %v, want %v", when, k, got, v)
			}
		}
	}
	series := scrape(t, l)
	check("after the run", series, wantCounters)
	check("after the run", series, wantGauges)
	if v, ok := series["mdm_auth_store_size_bytes"]; !ok || v <= 0 {
		t.Errorf("mdm_auth_store_size_bytes = %v (present %v), want the store's size", v, ok)
	}
	if ts := series["mdm_auth_inventory_timestamp_seconds"]; ts < float64(start.Unix()) {
		t.Errorf("inventory timestamp %v predates the run", ts)
	}
	for k := range series {
		if strings.Contains(k, "alice") || strings.Contains(k, d.EnrollmentKey()) {
			t.Errorf("series %s carries user data", k)
		}
	}

	// A reload gives Caddy a new registry: the counters join it and keep
	// their values.
	cf, err := os.ReadFile(l.Caddy.CaddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Caddy.Reload(string(cf)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	check("after a reload", scrape(t, l), wantCounters)
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("poll after the reload: %v", err)
	}
	wantCounters[`mdm_auth_mdm_requests_total{reason="ok",result="allowed"}`] = 3
	wantCounters[`mdm_auth_store_operation_duration_seconds_count{op="bind"}`] = 1
	check("after a reload and a poll", scrape(t, l), wantCounters)
	if n := len(hr.received()); n != 1 {
		t.Fatalf("%d webhook events after the reload, want still 1", n)
	}
}
