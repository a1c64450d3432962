package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// enrollPhase runs full enrollments through configuration B in front of
// NanoMDM, EnrollConcurrency at a time: discovery, the enrollment POSTs,
// the web sign-in at the real OpenID provider, the profile, then
// Authenticate and TokenUpdate. Every device opens its own connections,
// as separate devices do.
func (e *env) enrollPhase(ctx context.Context, storage string) (*EnrollFigures, error) {
	o := e.o
	total := o.EnrollMax + 1 // one more warms the gateway (provider discovery) up
	o.logf("enrollment: issuing %d device identities", total)
	leaves := make([]*testenv.Leaf, total)
	err := parallel(ctx, total, 0, func(_ context.Context, i int) error {
		var err error
		leaves[i], err = e.ca.IssueClient(fmt.Sprintf("bench enrollment %d", i))
		return err
	})
	if err != nil {
		return nil, err
	}
	builtIn, err := device.NewSelfSigned("Device Built-In iPhone17,2")
	if err != nil {
		return nil, err
	}
	users := benchUsers(o.EnrollUsers)
	enroll := func(i int) error {
		tr := &http.Transport{TLSClientConfig: e.tls.Clone()}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: time.Minute}
		u := users[i%len(users)]
		d, err := device.New(device.Config{
			Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
			UserIdentifier: u.Email, DiscoveryBase: e.base, HTTPClient: client, BuiltIn: builtIn,
			Identity: &device.Identity{Cert: leaves[i].Cert, Key: leaves[i].Key},
			Browser:  &device.FormBrowser{Client: client, Username: u.Username, Password: u.Password},
		})
		if err != nil {
			return err
		}
		if _, err := d.Enroll(ctx); err != nil {
			return err
		}
		if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
			return err
		}
		return d.TokenUpdate(ctx, device.DeviceChannel)
	}

	c, err := e.startCaddy(ConfigB, UpstreamNanoMDM, storage)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	if err := enroll(o.EnrollMax); err != nil {
		return nil, fmt.Errorf("warm-up enrollment: %w", err)
	}
	o.logf("enrollment: %d at a time, at most %d or %s", o.EnrollConcurrency, o.EnrollMax, o.EnrollDuration)
	pids := []int{c.PID(), e.idp.PID(), e.nano.PID(), 0}
	before, err := sampleProcs(pids)
	if err != nil {
		return nil, err
	}
	var (
		next atomic.Int64
		mu   sync.Mutex
		hist Histogram
		errs = map[string]int{}
		done int
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(o.EnrollDuration)
	for w := 0; w < o.EnrollConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= o.EnrollMax {
					return
				}
				t0 := time.Now()
				err := enroll(i)
				lat := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs[enrollStep(err)]++
					if len(errs) == 1 && errs[enrollStep(err)] == 1 {
						o.logf("  first enrollment error: %v", err)
					}
				} else {
					done++
					hist.Record(lat)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, err := sampleProcs(pids)
	if err != nil {
		return nil, err
	}
	f := &EnrollFigures{
		Concurrency: o.EnrollConcurrency, Started: int(min(next.Load(), int64(o.EnrollMax))), Completed: done,
		Errors: nonEmpty(errs), Seconds: round3(elapsed.Seconds()), Latency: hist.Summary(),
	}
	if elapsed > 0 {
		f.PerSecond = round1(float64(done) / elapsed.Seconds())
	}
	if done > 0 {
		per := func(i int) float64 {
			return round3(float64((after[i].CPU - before[i].CPU).Microseconds()) / 1000 / float64(done))
		}
		f.CaddyCPUms, f.IdPCPUms, f.NanoMDMCPUms, f.LoadgenCPUms = per(0), per(1), per(2), per(3)
	}
	o.logf("  %d enrollments in %.1f s (%.1f/s), errors %v; CPU per enrollment: caddy %.2f ms, provider %.2f ms, nanomdm %.2f ms, devices %.2f ms",
		done, f.Seconds, f.PerSecond, f.Errors, f.CaddyCPUms, f.IdPCPUms, f.NanoMDMCPUms, f.LoadgenCPUms)
	return f, c.Stop()
}

// sampleProcs reads each pid (0: this process).
func sampleProcs(pids []int) ([]ProcSample, error) {
	out := make([]ProcSample, len(pids))
	for i, pid := range pids {
		s, err := ReadProc(pid)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// enrollStep names the step an enrollment failed at.
func enrollStep(err error) string {
	var pe *device.ProtocolError
	if errors.As(err, &pe) {
		return pe.Step
	}
	var he *device.HTTPError
	if errors.As(err, &he) {
		return fmt.Sprintf("%s %d", he.Step, he.Status)
	}
	var se *device.SignInError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s %d", device.StepSignIn, se.Status)
	}
	var re *device.RefusedError
	if errors.As(err, &re) {
		return re.Step + " refused"
	}
	for _, s := range []string{device.StepDiscovery, device.StepEnroll, device.StepSignIn, device.StepCallback,
		device.StepProfile, device.StepCheckIn, device.StepCommand} {
		if strings.HasPrefix(err.Error(), s+":") {
			return s
		}
	}
	return "other"
}
