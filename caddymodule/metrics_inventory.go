package caddymodule

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/inventory"
	"github.com/mdmauth/mdmauth/internal/store"
)

// Inventory gauge timing: the counts are computed at most every
// inventoryEvery, by a scrape (never by a device's request), each
// computation bounded by inventoryTimeout; a scrape waits at most that long
// and otherwise reports the previous counts.
const (
	inventoryEvery   = 30 * time.Second
	inventoryTimeout = 5 * time.Second
)

// inventoryGauges is a collector of the store's counts (inventory.Compute).
// One is registered per config, on the config's store; a second mdm_auth
// handler of the same config uses the first one's.
type inventoryGauges struct {
	src        store.Inventory
	ctx        context.Context // ends with the config
	now        func() time.Time
	every      time.Duration
	timeout    time.Duration
	stallAfter time.Duration
	log        *zap.Logger

	mu      sync.Mutex
	stats   *inventory.Stats
	tried   time.Time
	running chan struct{}
	failing bool
}

func newInventoryGauges(ctx context.Context, src store.Inventory, log *zap.Logger) *inventoryGauges {
	return &inventoryGauges{src: src, ctx: ctx, now: time.Now, every: inventoryEvery, timeout: inventoryTimeout,
		stallAfter: inventory.DefaultStallAfter, log: log}
}

// registerInventory registers g in reg unless the config already has one.
func registerInventory(reg prometheus.Registerer, g *inventoryGauges) error {
	err := reg.Register(g)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return nil
	}
	return err
}

func gaugeDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("mdm_auth_"+name, help, labels, nil)
}

var (
	descLiveTokens   = gaugeDesc("live_tokens", "Access tokens neither expired nor revoked.")
	descLiveFamilies = gaugeDesc("live_token_families", "OAuth 2 token families neither expired nor revoked.")
	descEnrollments  = gaugeDesc("enrollments", "Enrollments by state (active, reauth, blocked, offboarding, removed).", "state")
	descPending      = gaugeDesc("pending_sign_ins", "Sign-ins started in a browser and not finished.")
	descRecent       = gaugeDesc("recent_sign_ins", "Sign-ins of the last 24 hours.")
	descStalled      = gaugeDesc("stalled_sign_ins",
		"Sign-ins of the last 24 hours older than 15 minutes whose device never checked in: the trace of a failed Managed Apple Account sign-in or a profile that never installed.")
	descStoreBytes = gaugeDesc("store_size_bytes", "Size of the token store on disk (-1 when unknown).")
	descInventory  = gaugeDesc("inventory_timestamp_seconds", "When the store counts above were taken (Unix time).")
)

// Describe implements prometheus.Collector.
func (g *inventoryGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLiveTokens, descLiveFamilies, descEnrollments, descPending, descRecent, descStalled, descStoreBytes, descInventory} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the latest counts, if any.
func (g *inventoryGauges) Collect(ch chan<- prometheus.Metric) {
	s := g.current()
	if s == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descLiveTokens, float64(s.LiveTokens))
	gauge(descLiveFamilies, float64(s.LiveFamilies))
	for _, st := range []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
		gauge(descEnrollments, float64(s.Enrollments[st]), string(st))
	}
	gauge(descPending, float64(s.PendingSignIns))
	gauge(descRecent, float64(s.SignIns))
	gauge(descStalled, float64(s.Stalled))
	gauge(descStoreBytes, float64(s.StoreBytes))
	gauge(descInventory, float64(s.At.UnixNano())/1e9)
}

// current returns the latest counts, starting a computation when they are
// older than g.every and waiting for it at most g.timeout.
func (g *inventoryGauges) current() *inventory.Stats {
	g.mu.Lock()
	if g.running == nil && (g.tried.IsZero() || g.now().Sub(g.tried) >= g.every) {
		g.tried = g.now()
		g.running = make(chan struct{})
		go g.refresh(g.running)
	}
	running := g.running
	g.mu.Unlock()
	if running != nil {
		t := time.NewTimer(g.timeout)
		select {
		case <-running:
		case <-t.C:
		case <-g.ctx.Done():
		}
		t.Stop()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

func (g *inventoryGauges) refresh(done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(g.ctx, g.timeout)
	defer cancel()
	s, err := inventory.Compute(ctx, g.src, g.now(), g.stallAfter)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running = nil
	if err != nil {
		if !g.failing {
			g.log.Warn("counting the token store for metrics failed; the gauges keep their last values", zap.Error(err))
		}
		g.failing = true
		return
	}
	if g.failing {
		g.log.Info("counting the token store for metrics works again")
	}
	g.failing = false
	g.stats = s
}
