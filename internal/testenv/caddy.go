package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CaddyOptions configures StartCaddy.
type CaddyOptions struct {
	// Caddyfile is the configuration. Put "admin 127.0.0.1:<port>" and free http_port and
	// https_port in its global options so that nothing binds the default ports.
	Caddyfile string
	// Env is added to Caddy's environment ({$NAME} placeholders in the Caddyfile read it).
	Env map[string]string
	// AdminAddr is the admin listener (host:port) from the Caddyfile; Reload needs it, and
	// without ReadyURL readiness is checked on it.
	AdminAddr string
	// ReadyURL is polled until it answers with any HTTP status (TLS is not verified).
	ReadyURL string
	// Binary is the Caddy executable; empty means BuildCaddy().
	Binary string
}

// Caddy is a running Caddy. Its HOME, XDG_DATA_HOME and XDG_CONFIG_HOME point into a private
// directory that survives Stop, Kill and Restart.
type Caddy struct {
	// Dir holds the Caddyfile, the log and Caddy's home.
	Dir string
	// CaddyfilePath is the file Caddy was started with and Reload rewrites.
	CaddyfilePath string

	opts CaddyOptions
	bin  string
	env  []string
	proc *process
}

// StartCaddy writes the Caddyfile, runs "caddy run --config Caddyfile --adapter caddyfile" and
// waits until it is ready (see CaddyOptions). tb's cleanup kills it.
func StartCaddy(tb TB, opts CaddyOptions) (*Caddy, error) {
	tb.Helper()
	if opts.ReadyURL == "" && opts.AdminAddr == "" {
		return nil, errors.New("testenv: StartCaddy: set ReadyURL or AdminAddr")
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = BuildCaddy(); err != nil {
			return nil, err
		}
	}
	dir := tb.TempDir()
	c := &Caddy{Dir: dir, CaddyfilePath: filepath.Join(dir, "Caddyfile"), opts: opts, bin: bin}
	home := filepath.Join(dir, "home")
	set := map[string]string{
		"HOME":            home,
		"XDG_DATA_HOME":   filepath.Join(home, "data"),
		"XDG_CONFIG_HOME": filepath.Join(home, "config"),
	}
	for _, d := range set {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	for k, v := range opts.Env {
		set[k] = v
	}
	c.env = childEnv([]string{"CADDY_"}, set)
	if err := os.WriteFile(c.CaddyfilePath, []byte(opts.Caddyfile), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	args := []string{"run", "--config", c.CaddyfilePath, "--adapter", "caddyfile"}
	c.proc = newProcess("caddy", logFile(dir, "caddy"), bin, args, c.env, dir)
	registerCleanup(tb, c.proc)
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts Caddy again after Stop or Kill, with the current Caddyfile, and waits until it is
// ready.
func (c *Caddy) Start() error {
	if err := c.proc.start(); err != nil {
		return err
	}
	probe := probeAny(c.opts.ReadyURL)
	if c.opts.ReadyURL == "" {
		probe = probeOK("http://" + c.opts.AdminAddr + "/config/")
	}
	if err := c.proc.waitReady(StartTimeout, probe); err != nil {
		_ = c.proc.kill()
		return err
	}
	return nil
}

// Stop sends SIGTERM and waits for Caddy to exit (killing it after a grace time).
func (c *Caddy) Stop() error { return c.proc.stop() }

// Kill kills Caddy with SIGKILL, as a crash would.
func (c *Caddy) Kill() error { return c.proc.kill() }

// Restart stops Caddy gracefully and starts it again.
func (c *Caddy) Restart() error {
	if err := c.Stop(); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return c.Start()
}

// Running reports whether the Caddy process is alive.
func (c *Caddy) Running() bool { return c.proc.running() }

// Reload writes caddyfile over the Caddyfile and applies it through
// "caddy reload --force --address <AdminAddr>", which returns once the new configuration is
// running (or was refused; the error then carries Caddy's message).
func (c *Caddy) Reload(caddyfile string) error {
	if c.opts.AdminAddr == "" {
		return errors.New("testenv: Caddy.Reload needs CaddyOptions.AdminAddr")
	}
	if err := os.WriteFile(c.CaddyfilePath, []byte(caddyfile), 0o600); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "reload", "--config", c.CaddyfilePath, "--adapter", "caddyfile",
		"--address", c.opts.AdminAddr, "--force")
	cmd.Env = c.env
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testenv: caddy reload: %w\n%s", err, lastLines(out.String(), tailLines))
	}
	return nil
}

// Logs returns Caddy's output so far (all runs).
func (c *Caddy) Logs() string { return c.proc.logs() }

// LogPath returns the path of Caddy's log file.
func (c *Caddy) LogPath() string { return c.proc.logPath }

// WaitLog waits until Caddy's log contains substr, for at most timeout.
func (c *Caddy) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(c.Logs(), substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: %q not in caddy log after %s", substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
