package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// cli runs "caddy mdm-auth <args>" with the lab's Caddy binary, finding
// the admin endpoint from the lab's Caddyfile as an operator would, and
// returns its standard output; err is set on a non-zero exit.
func cli(t *testing.T, l *lab.Lab, args ...string) (string, error) {
	t.Helper()
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"mdm-auth"}, args...)
	if args[0] != "restore" && !contains(args, "--storage-dir") {
		full = append(full, "--config", l.Caddy.CaddyfilePath, "--adapter", "caddyfile")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = errors.New(strings.TrimSpace(tail(stderr.String(), 5)))
		}
	}
	return stdout.String(), err
}

// caddyBinary is the Caddy the lab runs, built once per test process.
var caddyBinary = sync.OnceValues(testenv.BuildCaddy)

func mustCLI(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	out, err := cli(t, l, args...)
	if err != nil {
		t.Fatalf("caddy mdm-auth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// challenged sends d's next MDM request with its current token, without
// the emulator's 401 handling, and reports whether it was a 401 with one
// challenge.
func challenged(t *testing.T, c context.Context, d *device.Device) bool {
	t.Helper()
	resp, _, err := d.Send(c, d.Profile().ServerURL, idleBody(d), device.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode == http.StatusUnauthorized && len(resp.Header.Values("WWW-Authenticate")) == 1
}

// poll polls d and checks the number of sign-in prompts it took so far.
func poll(t *testing.T, c context.Context, d *device.Device, prompts int) {
	t.Helper()
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if d.Prompts() != prompts {
		t.Fatalf("prompts = %d, want %d", d.Prompts(), prompts)
	}
}

func TestAdminCLIListRevokeBackupRestore(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	alicePhone := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	alicePad := newDevice(t, l, "iPad", "iPad16,3", "alice@example.com", "alice")
	bobPhone := newDevice(t, l, "iPhone", "iPhone17,2", "bob@example.com", "bob")
	for _, d := range []*device.Device{alicePhone, alicePad, bobPhone} {
		enrollAndCheckIn(t, c, d)
	}
	alice := l.OIDC.Issuer + ",u-alice"

	// List, filter, paginate.
	out := mustCLI(t, l, "list", "--limit", "2")
	if n := strings.Count(out, "active"); n != 2 || !strings.Contains(out, "more: --cursor ") {
		t.Errorf("first page of 2:\n%s", out)
	}
	var all admin.EnrollmentList
	if err := json.Unmarshal([]byte(mustCLI(t, l, "list", "--limit", "1", "--all", "--json")), &all); err != nil || len(all.Enrollments) != 3 {
		t.Fatalf("--all: %v %+v", err, all)
	}
	var mine admin.EnrollmentList
	if err := json.Unmarshal([]byte(mustCLI(t, l, "list", "--user", alice, "--json")), &mine); err != nil || len(mine.Enrollments) != 2 {
		t.Fatalf("--user alice: %v %+v", err, mine)
	}
	for _, e := range mine.Enrollments {
		if e.ManagedAppleID != "alice@example.com" || e.Mode != "byod" || e.State != "active" || e.TokenID == "" {
			t.Errorf("alice's enrollment %+v", e)
		}
	}
	out = mustCLI(t, l, "list", "--managed-apple-id", "bob@example.com")
	if !strings.Contains(out, bobPhone.EnrollmentKey()) || strings.Contains(out, alicePhone.EnrollmentKey()) {
		t.Errorf("--managed-apple-id bob:\n%s", out)
	}
	for _, d := range []*device.Device{alicePhone, alicePad, bobPhone} {
		if strings.Contains(out+mustCLI(t, l, "list", "--tokens", "--json"), d.Token()) {
			t.Fatal("a token appears in the CLI's output")
		}
	}

	// Revoke one token by its id: challenged on the very next request;
	// the device signs in again and goes on.
	var detail admin.EnrollmentDetail
	if err := json.Unmarshal([]byte(mustCLI(t, l, "show", alicePhone.EnrollmentKey(), "--json")), &detail); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, l, "revoke", detail.Enrollment.TokenID)
	if !challenged(t, c, alicePhone) {
		t.Fatal("alice's iPhone was not challenged after its token was revoked")
	}
	poll(t, c, alicePhone, 1)
	if challenged(t, c, bobPhone) || challenged(t, c, alicePad) {
		t.Fatal("revoking one token touched another device")
	}

	// Every token of an enrollment.
	mustCLI(t, l, "revoke", "--enrollment", bobPhone.EnrollmentKey())
	if !challenged(t, c, bobPhone) {
		t.Fatal("bob's iPhone was not challenged after revoke --enrollment")
	}
	poll(t, c, bobPhone, 1)

	// Every token of a user.
	mustCLI(t, l, "revoke", "--user", alice)
	if !challenged(t, c, alicePhone) || !challenged(t, c, alicePad) {
		t.Fatal("alice's devices were not challenged after revoke --user")
	}
	poll(t, c, alicePhone, 2)
	poll(t, c, alicePad, 1)

	// Block: challenged, and the sign-in is refused; unblock: a sign-in
	// lets the device go on.
	out = mustCLI(t, l, "block", alicePad.EnrollmentKey())
	if !strings.Contains(out, "active → blocked") {
		t.Errorf("block:\n%s", out)
	}
	if !challenged(t, c, alicePad) {
		t.Fatal("the blocked iPad was not challenged")
	}
	if _, err := alicePad.Poll(c, device.DeviceChannel); err == nil {
		t.Fatal("the blocked iPad got through by signing in again")
	}
	mustCLI(t, l, "unblock", alicePad.EnrollmentKey())
	poll(t, c, alicePad, 3)

	// reauth for the whole user.
	mustCLI(t, l, "reauth", "--user", alice)
	if !challenged(t, c, alicePhone) || !challenged(t, c, alicePad) {
		t.Fatal("alice's devices were not challenged after reauth --user")
	}
	poll(t, c, alicePhone, 3)
	poll(t, c, alicePad, 4)

	stats := mustCLI(t, l, "stats")
	if !strings.Contains(stats, "store:") || !strings.Contains(stats, "ok") {
		t.Errorf("stats:\n%s", stats)
	}

	// Backup while running, stop Caddy, wipe the store, restore, start:
	// every device goes on without a prompt.
	backup := filepath.Join(t.TempDir(), "mdmauth.backup")
	mustCLI(t, l, "backup", "--output", backup)
	if err := l.Caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(l.StorageDir); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, l, "restore", "--storage-dir", l.StorageDir, "--input", backup)
	if err := l.Caddy.Start(); err != nil {
		t.Fatal(err)
	}
	prompts := map[*device.Device]int{alicePhone: 3, alicePad: 4, bobPhone: 1}
	for d, n := range prompts {
		if challenged(t, c, d) {
			t.Fatalf("%s is challenged after the restore", d.EnrollmentKey())
		}
		uuid, cmd := testenv.ProfileListCommand()
		runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
		if d.Prompts() != n {
			t.Errorf("%s: prompts = %d after the restore, want %d", d.EnrollmentKey(), d.Prompts(), n)
		}
	}
	out = mustCLI(t, l, "list")
	if strings.Count(out, "active") != 3 {
		t.Errorf("after the restore:\n%s", out)
	}
}
