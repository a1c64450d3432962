package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/mdmauth/mdmauth/internal/device"
)

// benchTopic is the APNs topic of the benchmark's profile.
const benchTopic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// parallel runs fn(ctx, i) for i in [0, n) on workers goroutines and
// returns the first error. The ctx fn gets is cancelled once a call fails.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err })
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// newFleetDevices makes n emulated iPhones, each with its own MDM identity
// issued by the CA (NanoMDM ties each enrollment to its certificate) and
// token i, installed as if enrolled at the gateway.
func (e *env) newFleetDevices(ctx context.Context, n int, tokens Tokens) ([]*device.Device, error) {
	builtIn, err := device.NewSelfSigned("Device Built-In iPhone17,2")
	if err != nil {
		return nil, err
	}
	devs := make([]*device.Device, n)
	err = parallel(ctx, n, 0, func(_ context.Context, i int) error {
		leaf, err := e.ca.IssueClient(fmt.Sprintf("bench device %d", i))
		if err != nil {
			return err
		}
		d, err := device.New(device.Config{
			Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
			UserIdentifier: fmt.Sprintf("user%07d@example.com", i),
			HTTPClient:     e.client,
			BuiltIn:        builtIn,
			Identity:       &device.Identity{Cert: leaf.Cert, Key: leaf.Key},
		})
		if err != nil {
			return err
		}
		p := &device.Profile{
			EnrollmentMode: device.ModeBYOD, AssignedManagedAppleID: fmt.Sprintf("user%07d@example.com", i),
			ServerURL: e.base + MDMPath, CheckInURL: e.base + MDMPath, Topic: benchTopic, SignMessage: true,
			IdentityCertificateUUID: "7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C", IdentityPayloadType: "com.apple.security.scep",
		}
		if err := d.Install(p); err != nil {
			return err
		}
		d.SetToken(tokens.Token(i))
		devs[i] = d
		return nil
	})
	return devs, err
}

// fleetBinding is device i's binding for the preload.
func fleetBinding(devs []*device.Device, i int) Binding {
	d := devs[i]
	return Binding{
		Token:          d.Token(),
		EnrollmentID:   d.EnrollmentKey(),
		Subject:        fmt.Sprintf("bench-%07d", i),
		ManagedAppleID: fmt.Sprintf("user%07d@example.com", i),
	}
}

// checkIn sends every device's Authenticate and TokenUpdate through the
// running gateway, so that NanoMDM knows the enrollments (and their
// certificates) before the load starts.
func checkIn(ctx context.Context, devs []*device.Device, workers int) error {
	return parallel(ctx, len(devs), workers, func(_ context.Context, i int) error {
		d := devs[i]
		if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		return nil
	})
}

// prepareFleet signs every device's Status Idle and one command result
// (Acknowledged, a command UUID of its own) once, in wire form.
func prepareFleet(ctx context.Context, devs []*device.Device) (*PreparedFleet, error) {
	f := &PreparedFleet{Idle: make([][]byte, len(devs)), Results: make([][]byte, len(devs))}
	err := parallel(ctx, len(devs), 0, func(_ context.Context, i int) error {
		idle, err := devs[i].PrepareIdle(device.DeviceChannel)
		if err != nil {
			return err
		}
		res, err := devs[i].PrepareReport(device.DeviceChannel, fmt.Sprintf("C0FFEE00-0000-4000-8000-%012X", i), "Acknowledged")
		if err != nil {
			return err
		}
		f.Idle[i] = idle.AppendWire(nil)
		f.Results[i] = res.AppendWire(nil)
		return nil
	})
	return f, err
}
