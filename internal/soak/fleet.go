package soak

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

// soakTopic is the APNs topic of the profiles the fleet starts with.
const soakTopic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// dev is one emulated device and what the soak knows about its
// credentials. A worker holds mu for a whole visit: like a real device,
// it sends one request at a time.
type dev struct {
	mu   sync.Mutex
	i    int
	site *site
	user testenv.User
	d    *device.Device
	// tok is what the soak knows of the device's current access token.
	tok tokenState
	// refresh is the OAuth 2 refresh token the soak holds for the device
	// (it answers the device's silent refreshes itself); familyDead is set
	// once an admin action revoked the token's family.
	refresh    string
	familyDead bool
	// generation counts the device's enrollments (re-enrollments add one).
	generation int
}

// randomKey returns 32 random bytes.
func randomKey() ([]byte, error) {
	b := make([]byte, 32)
	_, err := crand.Read(b)
	return b, err
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
		stop  atomic.Bool
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					stop.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// newDevice makes an emulated iPhone of user on s, with a fresh MDM
// identity issued by the CA (NanoMDM ties an enrollment to its
// certificate) and the user's browser.
func (e *env) newDevice(s *site, u testenv.User, label string) (*device.Device, error) {
	leaf, err := e.ca.IssueClient(label)
	if err != nil {
		return nil, err
	}
	return device.New(device.Config{
		Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
		UserIdentifier: u.Email,
		DiscoveryBase:  s.base,
		HTTPClient:     e.client,
		BuiltIn:        e.builtIn,
		Identity:       &device.Identity{Cert: leaf.Cert, Key: leaf.Key},
		Browser:        &device.FormBrowser{Client: e.client, Username: u.Username, Password: u.Password},
	})
}

// newFleet makes the devices, each with an enrollment profile installed
// as if it had enrolled: device i belongs to user i mod Users and to the
// oauth2 site for the first OAuth2Share of every hundred.
func (e *env) newFleet() ([]*dev, error) {
	o := e.o
	devs := make([]*dev, o.Devices)
	err := parallel(o.Devices, 0, func(i int) error {
		s := e.sites[0]
		if float64(i%100) < o.OAuth2Share*100 {
			s = e.sites[1]
		}
		u := e.users[i%len(e.users)]
		d, err := e.newDevice(s, u, fmt.Sprintf("soak device %d", i))
		if err != nil {
			return err
		}
		p := &device.Profile{
			EnrollmentMode: device.ModeBYOD, AssignedManagedAppleID: u.Email,
			ServerURL: s.base + mdmPath, CheckInURL: s.base + mdmPath, Topic: soakTopic, SignMessage: true,
			IdentityCertificateUUID: "7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C", IdentityPayloadType: "com.apple.security.scep",
		}
		if err := d.Install(p); err != nil {
			return err
		}
		devs[i] = &dev{i: i, site: s, user: u, d: d}
		return nil
	})
	return devs, err
}

// preload mints each device's first access token through the store API,
// as a sign-in would (Caddy is not running yet: Badger allows one process
// per directory): a web token, or for the oauth2 site a token family with
// its refresh token, from an authorization code. The tokens are not bound
// yet; the device's first check-in binds them through the gateway. A token
// of the first ExpireShare of the fleet expires at a random time of the
// run (the run starts about setup after now); the others outlive it.
func (e *env) preload(ctx context.Context, devs []*dev, setup time.Duration, seed uint64) error {
	s, err := badger.Open(badger.Options{Dir: e.storage, GCInterval: -1})
	if err != nil {
		return err
	}
	defer s.Close()
	// The key mdm_auth tags refresh tokens with, created here as mdm_auth
	// creates it on first use.
	key, err := s.Secret(ctx, oauth2RotateKey, randomKey)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	now := time.Now()
	expiries := make([]time.Time, len(devs))
	for i := range devs {
		d := e.o.Duration + time.Hour
		if rng.Float64() < e.o.ExpireShare {
			d = time.Duration((0.02 + 0.98*rng.Float64()) * float64(e.o.Duration))
		}
		expiries[i] = now.Add(setup + d)
	}
	var done atomic.Int64
	err = parallel(len(devs), 32, func(i int) error {
		dv := devs[i]
		u := dv.user
		g := token.Grant{Issuer: e.idp.Issuer, Subject: u.ID, UserIdentifier: u.Email, ManagedAppleID: u.Email,
			Mode: "byod", ModelFamily: "iPhone"}
		m := &token.Manager{Store: s, Lifetime: token.Lifetime{TTL: time.Until(expiries[i])}}
		if !dv.site.oauth2 {
			raw, t, err := m.Issue(ctx, g)
			if err != nil {
				return fmt.Errorf("soak: preload %d: %w", i, err)
			}
			dv.d.SetToken(raw)
			dv.tok = tokenState{expLo: t.ExpiresAt, expHi: t.ExpiresAt}
		} else {
			o := &token.OAuth{M: m, Key: key}
			code, err := o.NewCode(ctx, token.CodeGrant{Grant: g, ClientID: oauth2ClientID,
				RedirectURI: signin.DefaultRedirectURL, SignedInAt: now})
			if err != nil {
				return fmt.Errorf("soak: preload %d: %w", i, err)
			}
			pair, err := o.Exchange(ctx, code, oauth2ClientID, signin.DefaultRedirectURL, "")
			if err != nil {
				return fmt.Errorf("soak: preload %d: %w", i, err)
			}
			dv.d.SetToken(pair.AccessToken)
			dv.refresh = pair.RefreshToken
			dv.tok = tokenState{expLo: pair.Access.ExpiresAt, expHi: pair.Access.ExpiresAt}
		}
		if n := done.Add(1); n%5000 == 0 {
			e.o.Logf("  %d tokens written", n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.Close()
}
