package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/bench"
	"github.com/mdmauth/mdmauth/internal/inventory"
)

// counters are the run's running totals.
type counters struct {
	visits, accepted, refusedExpired, refusedRevoked atomic.Int64
	signInsWeb, signInsOAuth2, enrollments           atomic.Int64
	refreshes, refreshesRefused, deviceRefreshes     atomic.Int64
	adminActions, commands, checkIns, leftover       atomic.Int64
	tokensIssued                                     atomic.Int64
}

// runner keeps the fleet busy.
type runner struct {
	ctx  context.Context // the run's: cancelled on an interrupt
	e    *env
	o    Options
	devs []*dev
	errs *tally
	c    counters

	mu    sync.Mutex
	admin map[string]int64

	cursor atomic.Int64
	pace   pacer
}

func (r *runner) countAdmin(kind string) {
	r.c.adminActions.Add(1)
	r.mu.Lock()
	r.admin[kind]++
	r.mu.Unlock()
}

// progress snapshots the running totals.
func (r *runner) progress() Progress {
	mdm := int64(0)
	for _, n := range r.e.obs.responses()[classMDM] {
		mdm += n
	}
	return Progress{
		Requests:     mdm,
		SignIns:      r.c.signInsWeb.Load() + r.c.signInsOAuth2.Load() + r.c.enrollments.Load(),
		Refreshes:    r.c.refreshes.Load(),
		AdminActions: r.c.adminActions.Load(),
		TokensIssued: r.c.tokensIssued.Load() + int64(len(r.devs)),
		Errors:       r.errs.count() + r.e.obs.failures.count(),
	}
}

// next returns a device no other worker holds, locked: the fleet is
// visited in turn.
func (r *runner) next() *dev {
	for {
		dv := r.devs[int(r.cursor.Add(1)-1)%len(r.devs)]
		if dv.mu.TryLock() {
			return dv
		}
	}
}

// pacer spaces the visits at most every every apart, without catching up
// after a slow stretch: a machine that cannot keep the rate gets a lower
// one, not a burst.
type pacer struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

// wait blocks until the next slot; false when stop closed first.
func (p *pacer) wait(stop <-chan struct{}) bool {
	if p.every <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	p.mu.Lock()
	now := time.Now()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	p.next = slot.Add(p.every)
	p.mu.Unlock()
	t := time.NewTimer(time.Until(slot))
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// Run starts the deployment, preloads and checks in the fleet, keeps it
// busy for o.Duration while sampling Caddy, and judges the run. The
// processes it starts stop with o.TB's cleanup. The error is for a run
// that could not take place; a run that failed its criteria returns a
// Report whose Pass is false.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	rep := &Report{Machine: bench.ReadMachine(), Started: time.Now().UTC(), Settings: settingsOf(o)}
	t0 := time.Now()
	e, err := startEnv(o)
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(e.idp.Issuer); err == nil {
		e.obs.setProvider(u.Host)
	}
	o.Logf("fleet: %d devices, %d users", o.Devices, o.Users)
	devs, err := e.newFleet()
	if err != nil {
		return nil, err
	}
	oauth2 := 0
	for _, dv := range devs {
		if dv.site.oauth2 {
			oauth2++
		}
	}
	o.Logf("  %d on the web site, %d on the oauth2 site", len(devs)-oauth2, oauth2)
	rep.Setup.FleetSeconds = round1(time.Since(t0).Seconds())

	// The soak starts after the check-in of every device, about 10 ms a
	// device on 2 cores (NanoMDM's in-memory Authenticate grows with the
	// enrollments it holds). A token that expires earlier is renewed
	// during the check-in, under the same checks.
	t1 := time.Now()
	setup := 10*time.Second + time.Duration(o.Devices)*10*time.Millisecond
	o.Logf("preloading %d tokens through the store API", o.Devices)
	if err := e.preload(ctx, devs, setup, o.Seed); err != nil {
		return nil, err
	}
	rep.Setup.PreloadSeconds = round1(time.Since(t1).Seconds())
	if rep.Store.StartDisk, err = DirDiskBytes(e.storage); err != nil {
		return nil, err
	}
	if rep.Store.Start, err = ScanStore(e.storage); err != nil {
		return nil, err
	}
	if err := e.startCaddy(); err != nil {
		return nil, err
	}
	r := &runner{ctx: ctx, e: e, o: o, devs: devs, errs: newTally(), admin: map[string]int64{}}

	t2 := time.Now()
	o.Logf("check-in: Authenticate and TokenUpdate of every device through the gateway")
	_ = parallel(len(devs), o.Workers, func(i int) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		dv := devs[i]
		dv.mu.Lock()
		defer dv.mu.Unlock()
		r.checkIn(ctx, dv)
		return nil
	})
	rep.Setup.CheckInSeconds = round1(time.Since(t2).Seconds())
	// The soak opens its own connections: none left idle from the setup
	// closes during the run and lowers Caddy's counts.
	e.obs.closeIdle()
	o.Logf("  done in %.1f s; errors so far: %d", rep.Setup.CheckInSeconds, r.errs.count()+e.obs.failures.count())

	samples, stopped := r.soak(ctx, rep)
	rep.Samples = samples
	rep.Stopped = stopped
	if st, err := r.stats(ctx); err == nil {
		rep.Final = st
	} else {
		rep.Notes = append(rep.Notes, "the final statistics could not be read: "+err.Error())
	}
	rep.Counts = r.counts()
	rep.Responses = e.obs.responses()
	rep.Errors = r.errs.summary()
	rep.HTTPFailures = e.obs.failures.summary()
	if err := r.measureStoreEnd(rep); err != nil {
		rep.Notes = append(rep.Notes, "the store could not be measured at the end: "+err.Error())
	}
	evaluate(rep, o)
	return rep, nil
}

// measureStoreEnd stops Caddy (Badger allows one process per directory)
// and reads what the store holds.
func (r *runner) measureStoreEnd(rep *Report) error {
	if n := len(rep.Samples); n > 0 {
		rep.Store.EndDisk = rep.Samples[n-1].StoreDisk
	}
	// What the store gained records for after the preload: the tokens
	// issued since (all but the fleet's first ones) and the enrollments
	// (each device's first check-in, and the re-enrollments), which add up
	// to all tokens issued plus the re-enrollments.
	rep.Store.Written = rep.Counts.TokensIssued + rep.Counts.Enrollments
	if err := r.e.caddy.Stop(); err != nil {
		return err
	}
	var err error
	if rep.Store.EndDiskClosed, err = DirDiskBytes(r.e.storage); err != nil {
		return err
	}
	rep.Store.End, err = ScanStore(r.e.storage)
	return err
}

// maxErrors is the error count that ends a clearly broken run early.
func (r *runner) maxErrors() int64 { return max(200, int64(r.o.Devices)/10) }

// soak runs the workers and the sampler for the duration.
func (r *runner) soak(ctx context.Context, rep *Report) ([]Sample, string) {
	o := r.o
	if o.Rate > 0 {
		r.pace.every = time.Duration(float64(time.Second) / o.Rate)
	}
	sampler := &Sampler{PID: r.e.caddy.PID(), AdminURL: r.e.adminURL, StoreDir: r.e.storage, Client: r.e.adminClient}
	stop := make(chan struct{})
	var once sync.Once
	var why string
	halt := func(reason string) {
		once.Do(func() { why = reason; close(stop) })
	}
	o.Logf("soak: %s, at most %.0f visits/s on %d workers; warm-up %s, a sample every %s", o.Duration, o.Rate, o.Workers, o.Warmup, o.SampleEvery)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)+1))
			wctx := withWorker(ctx, w)
			for r.pace.wait(stop) {
				dv := r.next()
				r.visit(wctx, dv, rng)
				dv.mu.Unlock()
			}
		}()
	}

	var samples []Sample
	take := func(afterLoad bool) {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := sampler.Sample(sctx)
		if err != nil {
			r.errs.add("sampling", "%v", err)
			return
		}
		s.T = round1(time.Since(start).Seconds())
		s.AfterLoad = afterLoad
		s.Counts = r.progress()
		samples = append(samples, s)
		o.Logf("  %5.0f s  goroutines %4d  fds %4d  rss %6.1f MiB (anon %6.1f)  store %6.1f MiB  requests %d  sign-ins %d  refreshes %d  admin %d  errors %d",
			s.T, s.Goroutines, s.FDs, mib(s.RSS), mib(s.Anon), mib(s.StoreDisk),
			s.Counts.Requests, s.Counts.SignIns, s.Counts.Refreshes, s.Counts.AdminActions, s.Counts.Errors)
	}
	tick := time.NewTicker(o.SampleEvery)
	defer tick.Stop()
	end := time.NewTimer(o.Duration)
	defer end.Stop()
	take(false)
loop:
	for {
		select {
		case <-ctx.Done():
			halt("interrupted")
			break loop
		case <-end.C:
			halt("")
			break loop
		case <-tick.C:
			take(false)
			if n := r.errs.count() + r.e.obs.failures.count(); n >= r.maxErrors() {
				halt(fmt.Sprintf("stopped early after %d errors", n))
				break loop
			}
		}
	}
	wg.Wait()
	rep.Seconds = round1(time.Since(start).Seconds())
	take(true)
	return samples, why
}

// counts returns the totals for the report.
func (r *runner) counts() Counts {
	c := &r.c
	r.mu.Lock()
	defer r.mu.Unlock()
	adm := map[string]int64{}
	for k, n := range r.admin {
		adm[k] = n
	}
	return Counts{
		Visits: c.visits.Load(), Accepted: c.accepted.Load(),
		RefusedExpired: c.refusedExpired.Load(), RefusedRevoked: c.refusedRevoked.Load(),
		SignInsWeb: c.signInsWeb.Load(), SignInsOAuth2: c.signInsOAuth2.Load(), Enrollments: c.enrollments.Load(),
		Refreshes: c.refreshes.Load(), RefreshesRefused: c.refreshesRefused.Load(), DeviceRefreshes: c.deviceRefreshes.Load(),
		AdminActions: c.adminActions.Load(), Admin: adm,
		Commands: c.commands.Load(), CheckIns: c.checkIns.Load(), Leftover: c.leftover.Load(),
		TokensIssued: c.tokensIssued.Load() + int64(len(r.devs)),
	}
}

// stats reads the admin API's statistics.
func (r *runner) stats(ctx context.Context) (*inventory.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.e.adminURL+admin.DefaultPrefix+"stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.e.adminClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st inventory.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
