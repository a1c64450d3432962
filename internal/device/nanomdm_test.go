package device_test

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/pem"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// nanoMDM is a NanoMDM v0.9.0 process started for a test.
type nanoMDM struct {
	url    string // http://127.0.0.1:port
	apiKey string
	out    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// nanoMDMBinary finds the nanomdm binary: $NANOMDM_BIN, else nanomdm on
// PATH, else in GOPATH/bin (where go install puts it).
func nanoMDMBinary() (string, error) {
	if bin := os.Getenv("NANOMDM_BIN"); bin != "" {
		return bin, nil
	}
	if bin, err := exec.LookPath("nanomdm"); err == nil {
		return bin, nil
	}
	bin := filepath.Join(build.Default.GOPATH, "bin", "nanomdm")
	if _, err := os.Stat(bin); err != nil {
		return "", errors.New("nanomdm is neither in $NANOMDM_BIN, on PATH nor in GOPATH/bin")
	}
	return bin, nil
}

// startNanoMDM runs NanoMDM with in-memory storage, trusting ca for
// Mdm-Signature. A missing binary fails the test: install it with
// go install github.com/micromdm/nanomdm/cmd/nanomdm@v0.9.0.
func startNanoMDM(t *testing.T, ca *device.Identity) *nanoMDM {
	t.Helper()
	bin, err := nanoMDMBinary()
	if err != nil {
		t.Fatalf("%v (install it: go install github.com/micromdm/nanomdm/cmd/nanomdm@v0.9.0)", err)
	}
	if info, err := buildinfo.ReadFile(bin); err == nil {
		t.Logf("NanoMDM %s %s", info.Main.Path, info.Main.Version)
	}
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n := &nanoMDM{url: "http://" + addr, apiKey: "test-api-key", out: &lockedBuffer{}}
	cmd := exec.Command(bin, "-storage", "inmem", "-storage-dsn", "", "-ca", caPath, "-api", n.apiKey, "-listen", addr, "-debug")
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("nanomdm output:\n%s", n.out)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(n.url + "/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nanomdm did not come up on %s: %v\n%s", addr, err, n.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// enqueue queues a command for the NanoMDM ids through its API and returns
// its CommandUUID.
func (n *nanoMDM) enqueue(ctx context.Context, id, requestType string) (string, error) {
	uuid := fmt.Sprintf("CMD-%d", time.Now().UnixNano())
	body, err := plist.MarshalIndent(map[string]any{
		"CommandUUID": uuid,
		"Command":     map[string]any{"RequestType": requestType},
	}, "\t")
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.url+"/v1/enqueue/"+id+"?nopush=1", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("nanomdm", n.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("enqueue: HTTP %d: %s", resp.StatusCode, answer)
	}
	if strings.Contains(string(answer), `"error"`) {
		return "", fmt.Errorf("enqueue: %s", answer)
	}
	return uuid, nil
}

func nanoDevice(t *testing.T, n *nanoMDM, family, mode string, id *device.Identity) *device.Device {
	t.Helper()
	product := "iPhone17,2"
	if family == "Mac" {
		product = "Mac14,2"
	}
	d, err := device.New(device.Config{
		Family: family, Product: product, OSVersion: "23A300", Language: "en-US",
		UserIdentifier: "alice@example.com",
		Identity:       id,
		InsecureHTTP:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Install(&device.Profile{
		EnrollmentMode:         mode,
		AssignedManagedAppleID: "alice@example.com",
		ServerURL:              n.url + "/mdm",
		Topic:                  "com.apple.mgmt.External.devicetest",
		SignMessage:            true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAgainstNanoMDM(t *testing.T) {
	ca, mdmID, _ := identities(t)
	n := startNanoMDM(t, ca)
	ctx := testContext(t)

	t.Run("BYOD iPhone keyed by EnrollmentID", func(t *testing.T) {
		d := nanoDevice(t, n, "iPhone", device.ModeBYOD, mdmID)
		if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
			t.Fatalf("TokenUpdate: %v", err)
		}
		if d.EnrollmentKey() != d.IDs().EnrollmentID {
			t.Fatalf("EnrollmentKey %q is not the EnrollmentID", d.EnrollmentKey())
		}
		uuid, err := n.enqueue(ctx, d.EnrollmentKey(), "ProfileList")
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := d.Poll(ctx, device.DeviceChannel)
		if err != nil || cmd == nil || cmd.UUID != uuid || cmd.RequestType != "ProfileList" {
			t.Fatalf("Poll = %+v, %v; want ProfileList %s", cmd, err, uuid)
		}
		next, err := d.Acknowledge(ctx, device.DeviceChannel, cmd)
		if err != nil || next != nil {
			t.Fatalf("Acknowledge = %+v, %v", next, err)
		}
		if cmd, err := d.Poll(ctx, device.DeviceChannel); err != nil || cmd != nil {
			t.Fatalf("Poll after Acknowledge = %+v, %v; want an empty queue", cmd, err)
		}
		if err := d.CheckOut(ctx); err != nil {
			t.Fatalf("CheckOut: %v", err)
		}
	})

	t.Run("ADDE Mac user channel keyed by UDID:UserID", func(t *testing.T) {
		mdmID2, err := device.NewIssued(ca, "mac") // NanoMDM refuses one certificate for two enrollments
		if err != nil {
			t.Fatal(err)
		}
		d := nanoDevice(t, n, "Mac", device.ModeADDE, mdmID2)
		if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
			t.Fatalf("TokenUpdate (device): %v", err)
		}
		if err := d.TokenUpdate(ctx, device.UserChannel); err != nil {
			t.Fatalf("TokenUpdate (user): %v", err)
		}
		ids := d.IDs()
		userID := d.ChannelID(device.UserChannel)
		if userID != ids.UDID+":"+ids.UserID || d.EnrollmentKey() != ids.UDID {
			t.Fatalf("channel ids %q, %q from %+v", d.EnrollmentKey(), userID, ids)
		}
		uuid, err := n.enqueue(ctx, userID, "InstalledApplicationList")
		if err != nil {
			t.Fatal(err)
		}
		if cmd, err := d.Poll(ctx, device.DeviceChannel); err != nil || cmd != nil {
			t.Fatalf("device channel Poll = %+v, %v; the command is for the user channel", cmd, err)
		}
		cmd, err := d.Poll(ctx, device.UserChannel)
		if err != nil || cmd == nil || cmd.UUID != uuid {
			t.Fatalf("user channel Poll = %+v, %v", cmd, err)
		}
		if next, err := d.Acknowledge(ctx, device.UserChannel, cmd); err != nil || next != nil {
			t.Fatalf("Acknowledge = %+v, %v", next, err)
		}
	})

	t.Run("identity not issued by the CA is refused", func(t *testing.T) {
		foreign, err := device.NewSelfSigned("intruder")
		if err != nil {
			t.Fatal(err)
		}
		d := nanoDevice(t, n, "iPhone", device.ModeBYOD, foreign)
		err = d.Authenticate(ctx, device.DeviceChannel)
		var he *device.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
			t.Fatalf("Authenticate with a foreign identity = %v, want HTTP 400", err)
		}
	})
}

// TestEnrollThroughGatewayToNanoMDM runs the whole flow: enrollment through
// the fake gateway, whose MDM endpoint checks the bearer and forwards to a
// real NanoMDM, as the deployment does.
func TestEnrollThroughGatewayToNanoMDM(t *testing.T) {
	ca, _, _ := identities(t)
	n := startNanoMDM(t, ca)
	srv := devicetest.New(devicetest.Options{MDMUpstream: n.url + "/mdm"})
	defer srv.Close()
	mdmID, err := device.NewIssued(ca, "gateway device")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newDevice(t, srv, func(c *device.Config) { c.Identity = mdmID })
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("TokenUpdate: %v", err)
	}
	uuid, err := n.enqueue(ctx, d.EnrollmentKey(), "SecurityInfo")
	if err != nil {
		t.Fatal(err)
	}
	srv.RevokeAll() // the next request needs a new sign-in first
	cmd, err := d.Poll(ctx, device.DeviceChannel)
	if err != nil || cmd == nil || cmd.UUID != uuid {
		t.Fatalf("Poll = %+v, %v", cmd, err)
	}
	if d.Prompts() != 1 {
		t.Errorf("Prompts = %d, want 1", d.Prompts())
	}
	if next, err := d.Acknowledge(ctx, device.DeviceChannel, cmd); err != nil || next != nil {
		t.Fatalf("Acknowledge = %+v, %v", next, err)
	}
	for _, r := range srv.MDMRequests() {
		if r.Status == http.StatusOK && !r.TokenValid {
			t.Errorf("%s forwarded without a valid bearer", r.Kind)
		}
	}
}
