package caddymodule

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdmauth/mdmauth/internal/token"
	"github.com/mdmauth/mdmauth/internal/webhook"
)

const webhookSecret = "a-webhook-secret-of-enough-length"

func TestBindingWebhookCaddyfile(t *testing.T) {
	const base = "mdm_auth {\n\tenrollment_profile /e.mobileconfig\n"
	tests := []struct {
		name string
		src  string
		want *BindingWebhook
		err  string
	}{
		{"full", "binding_webhook https://mdm.example.com/hooks/bound {\n\t\tsecret {env.MDMAUTH_WEBHOOK_SECRET}\n\t\ttimeout 10s\n\t}",
			&BindingWebhook{URL: "https://mdm.example.com/hooks/bound", Secret: "{env.MDMAUTH_WEBHOOK_SECRET}", Timeout: caddy.Duration(10 * time.Second)}, ""},
		{"secret only", "binding_webhook https://mdm.example.com/hook {\n\t\tsecret s\n\t}",
			&BindingWebhook{URL: "https://mdm.example.com/hook", Secret: "s"}, ""},
		{"no url", "binding_webhook {\n\t\tsecret s\n\t}", nil, "wrong argument count"},
		{"two urls", "binding_webhook https://a https://b {\n\t\tsecret s\n\t}", nil, "wrong argument count"},
		{"no secret", "binding_webhook https://mdm.example.com/hook", nil, "needs a secret"},
		{"bad timeout", "binding_webhook https://mdm.example.com/hook {\n\t\tsecret s\n\t\ttimeout soon\n\t}", nil, `invalid duration "soon"`},
		{"unknown option", "binding_webhook https://mdm.example.com/hook {\n\t\tsecret s\n\t\tretries 9\n\t}", nil, `unknown binding_webhook option "retries"`},
		{"twice", "binding_webhook https://a {\n\t\tsecret s\n\t}\n\tbinding_webhook https://b {\n\t\tsecret s\n\t}", nil, "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(base + "\t" + tt.src + "\n}"))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h.BindingWebhook, tt.want) {
				t.Fatalf("got %+v, want %+v", h.BindingWebhook, tt.want)
			}
		})
	}
}

func TestBindingWebhookProvisionErrors(t *testing.T) {
	t.Setenv("MDMAUTH_TEST_SHORT_SECRET", "short")
	for name, tc := range map[string]struct {
		hook map[string]any
		want string
	}{
		"plain http":   {map[string]any{"url": "http://mdm.example.com/hook", "secret": webhookSecret}, "must use https"},
		"short secret": {map[string]any{"url": "https://mdm.example.com/hook", "secret": "{env.MDMAUTH_TEST_SHORT_SECRET}"}, "at least 16 bytes"},
		"unset secret": {map[string]any{"url": "https://mdm.example.com/hook", "secret": "{env.MDMAUTH_TEST_UNSET}"}, "at least 16 bytes"},
		"no url":       {map[string]any{"secret": webhookSecret}, "binding_webhook"},
	} {
		t.Run(name, func(t *testing.T) {
			hc := validHandler(copyProfile(t, t.TempDir()))
			hc["binding_webhook"] = tc.hook
			err := caddy.Validate(testConfig(t, filepath.Join(t.TempDir(), "store"), hc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBindingWebhookDelivered runs an Authenticate through a provisioned
// handler: the MDM accepts it, and the receiver gets one signed event with
// the binding, while the counters see the request let through.
func TestBindingWebhookDelivered(t *testing.T) {
	got := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rc.Close()
	t.Setenv("MDMAUTH_TEST_WEBHOOK_SECRET", webhookSecret)
	hc := validHandler(copyProfile(t, t.TempDir()))
	hc["binding_webhook"] = map[string]any{"url": rc.URL + "/hooks/bound", "secret": "{env.MDMAUTH_TEST_WEBHOOK_SECRET}"}
	h, st := provisioned(t, hc)
	t.Cleanup(func() {
		if err := h.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	tm := &token.Manager{Store: st, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}}
	raw, _, err := tm.Issue(t.Context(), token.Grant{Issuer: "https://idp.example.com/", Subject: "u-alice",
		UserIdentifier: "alice@example.com", ManagedAppleID: "alice@example.com", Mode: "byod", ModelFamily: "iPhone"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("../internal/gateway/testdata/checkin/ue-authenticate.plist")
	if err != nil {
		t.Fatal(err)
	}
	allowedBefore := counterValue(t, "reason=ok,result=allowed")
	mdm := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	for i := 0; i < 2; i++ { // the second request binds nothing new
		r := httptest.NewRequest(http.MethodPut, "https://mdm.example.com/mdm/ad", strings.NewReader(string(body)))
		r.Header.Set("Authorization", "Bearer "+raw)
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, mdm); err != nil || w.Code != http.StatusOK {
			t.Fatalf("check-in: %d %v", w.Code, err)
		}
	}
	var req *http.Request
	select {
	case req = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivery")
	}
	b := <-bodies
	if err := webhook.Verify([]byte(webhookSecret), req.Header.Get(webhook.SignatureHeader), b, time.Now(), time.Minute); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"event": "enrollment.bound", "enrollment_id": "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
		"sub": "u-alice", "managed_apple_id": "alice@example.com", "mode": "byod", "model_family": "iPhone", "platform": "other"} {
		if ev[k] != v {
			t.Errorf("%s = %v, want %q", k, ev[k], v)
		}
	}
	if strings.Contains(string(b), raw) {
		t.Fatal("the event carries the token")
	}
	select {
	case <-got:
		t.Fatal("a second event for a binding that did not change")
	case <-time.After(300 * time.Millisecond):
	}
	if d := counterValue(t, "reason=ok,result=allowed") - allowedBefore; d != 2 {
		t.Fatalf("allowed requests counted %v, want 2", d)
	}
}

// counterValue reads mdm_auth_mdm_requests_total from the process-wide
// metrics.
func counterValue(t *testing.T, labels string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := procMetrics.register(reg); err != nil {
		t.Fatal(err)
	}
	return gather(t, reg).value("mdm_auth_mdm_requests_total", labels)
}
