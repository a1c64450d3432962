package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/webhook"
)

// BindingWebhook tells another system (typically the MDM's inventory) who
// owns each device. After every new binding of an enrollment (its first
// authenticated check-in, or the first one after a new sign-in) the handler
// POSTs
//
//	{"event":"enrollment.bound","id":"…","enrollment_id":"…","iss":"…","sub":"…",
//	 "user_identifier":"…","managed_apple_id":"…","mode":"byod","model_family":"iPhone",
//	 "platform":"other","at":"2025-01-02T03:04:05Z"}
//
// signed in the X-MDMAuth-Signature header: t=<unix time>,v1=<hex
// HMAC-SHA256 of "<t>.<body>" under Secret>. Deliveries are asynchronous
// (a bounded queue, one worker, 4 attempts with backoff); events that
// cannot be delivered are dropped and logged. No token is ever sent.
type BindingWebhook struct {
	// URL receives the events: https, or http to a loopback address.
	URL string `json:"url"`
	// Secret signs the events; at least 16 bytes. {env.*} is expanded.
	Secret string `json:"secret"`
	// Timeout bounds each delivery attempt. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// provision starts the sender of the binding webhook.
func (w *BindingWebhook) provision(expand func(string) string, log *zap.Logger) (*webhook.Sender, error) {
	if w.Timeout < 0 {
		return nil, fmt.Errorf("binding_webhook: timeout must not be negative")
	}
	s, err := webhook.New(webhook.Config{
		URL:     expand(w.URL),
		Secret:  []byte(expand(w.Secret)),
		Timeout: time.Duration(w.Timeout),
		Log:     log,
		Observe: procMetrics.countWebhook,
	})
	if err != nil {
		return nil, fmt.Errorf("binding_webhook: %v", err)
	}
	return s, nil
}

// bound is the gateway's Bound hook: it counts a replaced token and queues
// the webhook event.
func (h *Handler) bound(b gateway.Binding) {
	if b.Replaced {
		procMetrics.tokensRevoked.WithLabelValues("replaced").Inc()
	}
	if h.webhook != nil {
		h.webhook.Send(webhook.Binding{EnrollmentID: b.EnrollmentID, Issuer: b.Issuer, Subject: b.Subject,
			UserIdentifier: b.UserIdentifier, ManagedAppleID: b.ManagedAppleID, Mode: b.Mode,
			ModelFamily: b.ModelFamily, Platform: b.Platform, At: b.At})
	}
}

// Cleanup releases what Provision started: it stops the binding webhook,
// giving queued events a last attempt within one delivery timeout.
func (h *Handler) Cleanup() error {
	if h.webhook == nil {
		return nil
	}
	d := time.Duration(h.BindingWebhook.Timeout)
	if d <= 0 {
		d = webhook.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := h.webhook.Close(ctx); err != nil {
		return fmt.Errorf("binding_webhook: stopping: %v", err)
	}
	return nil
}

// unmarshal parses
//
//	binding_webhook <url> {
//		secret  {env.MDMAUTH_WEBHOOK_SECRET}
//		timeout 5s
//	}
func (w *BindingWebhook) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	w.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch name := d.Val(); name {
		case "secret":
			if !d.AllArgs(&w.Secret) {
				return d.ArgErr()
			}
		case "timeout":
			dur, err := positiveDuration(d, "timeout")
			if err != nil {
				return err
			}
			w.Timeout = dur
		default:
			return d.Errf("unknown binding_webhook option %q", name)
		}
	}
	if w.Secret == "" {
		return d.Err("binding_webhook needs a secret")
	}
	return nil
}
