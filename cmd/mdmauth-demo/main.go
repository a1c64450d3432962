// Command mdmauth-demo runs account-driven enrollment end to end on
// loopback with real parts: NanoMDM v0.9.0, an OpenID provider with a login
// form, and Caddy built from this repository with mdm_auth in front of
// NanoMDM. An emulated iPhone (alice@example.com) and an emulated Mac then
// walk through discovery → sign-in → enrollment → check-in → a command →
// forced re-authentication, and every step is printed.
//
//	go run ./cmd/mdmauth-demo            # run the walk-through and exit
//	go run ./cmd/mdmauth-demo -oauth2    # the same with apple-oauth2 and silent refresh
//	go run ./cmd/mdmauth-demo -keep      # then keep the servers running
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

func main() {
	keep := flag.Bool("keep", false, "keep the servers running after the walk-through (Ctrl-C stops them)")
	verbose := flag.Bool("v", false, "print the servers' own progress messages")
	oauth := flag.Bool("oauth2", false, "challenge with apple-oauth2 (short access tokens, silent refresh) instead of apple-as-web")
	flag.Parse()
	if err := run(*keep, *verbose, *oauth); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func heading(format string, args ...any) {
	fmt.Printf("\n== %s\n", fmt.Sprintf(format, args...))
}

func run(keep, verbose, oauth bool) error {
	logf := func(string, ...any) {}
	if verbose {
		logf = func(f string, a ...any) { fmt.Printf("   · "+f+"\n", a...) }
	}
	scope, err := testenv.NewScope(logf)
	if err != nil {
		return err
	}
	defer scope.Close()

	heading("Building Caddy with mdm_auth and installing NanoMDM v0.9.0 and the OpenID provider (first run: a few minutes)")
	opts := lab.Options{}
	if oauth {
		opts.Handler = "\t\tsign_in oauth2\n"
	}
	l, err := lab.Start(scope, opts)
	if err != nil {
		return err
	}
	fmt.Printf("   gateway (Caddy + mdm_auth): %s\n", l.BaseURL)
	fmt.Printf("   NanoMDM:                    %s\n", l.NanoMDM.URL)
	fmt.Printf("   OpenID provider:            %s  (users alice and bob, password %q)\n", l.OIDC.Issuer, lab.Password)
	fmt.Printf("   token store (Badger):       %s\n", l.StorageDir)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	show := func(who string) func(step, msg string) {
		return func(step, msg string) { fmt.Printf("   [%s] %-9s %s\n", who, step, msg) }
	}

	heading("iPhone: alice@example.com types her work account in Settings (User Enrollment, BYOD)")
	phone, err := l.NewDevice("iPhone", "iPhone17,2", "alice@example.com", "alice", show("iPhone"))
	if err != nil {
		return err
	}
	if _, err := phone.Enroll(ctx); err != nil {
		return fmt.Errorf("iPhone enrollment: %w", err)
	}
	if err := phone.Authenticate(ctx, device.DeviceChannel); err != nil {
		return err
	}
	if err := phone.TokenUpdate(ctx, device.DeviceChannel); err != nil {
		return err
	}

	heading("NanoMDM sends the iPhone a command through the gateway")
	if err := command(ctx, l, phone, device.DeviceChannel, phone.EnrollmentKey()); err != nil {
		return err
	}

	if oauth {
		heading("An hour later: the iPhone's access token has expired")
		if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
			_, err := s.UpdateToken(ctx, token.HashOf(phone.Token()), func(t *store.Token) error {
				t.ExpiresAt = time.Now().Add(-time.Second)
				return nil
			})
			return err
		}); err != nil {
			return err
		}
		if _, err := phone.Poll(ctx, device.DeviceChannel); err != nil {
			return err
		}
		fmt.Printf("   silent refreshes: %d, user prompts: %d\n", phone.Refreshes(), phone.Prompts())
	}

	heading("The administrator forces re-authentication of the iPhone's enrollment")
	if err := l.WithStore(func(m *token.Manager, _ store.Store) error {
		_, err := m.SetState(ctx, phone.EnrollmentKey(), store.StateReauth, time.Time{})
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("   enrollment %s → reauth\n", phone.EnrollmentKey())
	if _, err := phone.Poll(ctx, device.DeviceChannel); err != nil {
		return err
	}
	fmt.Printf("   the user was asked to sign in %d time(s); the device carries on with a new token\n", phone.Prompts())

	heading("Mac: alice@example.com enrolls her Mac (account-driven Device Enrollment, ADDE)")
	mac, err := l.NewDevice("Mac", "Mac14,2", "alice@example.com", "alice", show("Mac"))
	if err != nil {
		return err
	}
	if _, err := mac.Enroll(ctx); err != nil {
		return fmt.Errorf("Mac enrollment: %w", err)
	}
	// The device channel carries no bearer (macOS); the user channel does.
	if err := mac.Authenticate(ctx, device.DeviceChannel); err != nil {
		return err
	}
	for _, ch := range []device.Channel{device.DeviceChannel, device.UserChannel} {
		if err := mac.TokenUpdate(ctx, ch); err != nil {
			return err
		}
	}
	if err := command(ctx, l, mac, device.UserChannel, mac.ChannelID(device.UserChannel)); err != nil {
		return err
	}

	heading("Done: every step above went through Caddy + mdm_auth to an unchanged NanoMDM")
	if !keep {
		return nil
	}
	fmt.Printf("   servers keep running; Caddy's log: %s\n   press Ctrl-C to stop\n", l.Caddy.LogPath())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

func command(ctx context.Context, l *lab.Lab, d *device.Device, ch device.Channel, id string) error {
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName", "OSVersion")
	if _, err := l.NanoMDM.Enqueue(id, cmd); err != nil {
		return err
	}
	fmt.Printf("   NanoMDM API: enqueued DeviceInformation %s for %s\n", uuid, id)
	got, err := d.Poll(ctx, ch)
	if err != nil {
		return err
	}
	if got == nil || got.UUID != uuid {
		return fmt.Errorf("expected command %s, got %v", uuid, got)
	}
	if _, err := d.Acknowledge(ctx, ch, got); err != nil {
		return err
	}
	fmt.Printf("   %s acknowledged through the gateway\n", got.RequestType)
	return nil
}
