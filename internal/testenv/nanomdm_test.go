package testenv

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/micromdm/plist"
)

// startNanoMDM starts NanoMDM trusting a new device CA.
func startNanoMDM(t *testing.T) *NanoMDM {
	t.Helper()
	ca, err := NewCA("device CA")
	if err != nil {
		t.Fatal(err)
	}
	caPath, err := ca.WritePEM(t.TempDir(), "device-ca")
	if err != nil {
		t.Fatal(err)
	}
	n, err := StartNanoMDM(t, NanoMDMOptions{CAPath: caPath})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNanoMDMVersionAndEnqueue(t *testing.T) {
	t.Parallel()
	n := startNanoMDM(t)

	resp, err := http.Get(n.URL + "/version")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version string }
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || v.Version == "" {
		t.Fatalf("/version: status %d, %+v, %v", resp.StatusCode, v, err)
	}

	// The API is behind basic auth.
	resp, err = http.Post(n.URL+"/v1/enqueue/x", "application/xml", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("enqueue without key: status %d, want 401", resp.StatusCode)
	}

	uuid, cmd := ProfileListCommand()
	got, err := n.Enqueue("0000-ENROLLMENT-ID", cmd)
	if err != nil {
		t.Fatal(err)
	}
	if got != uuid {
		t.Errorf("Enqueue returned %q, want %q", got, uuid)
	}

	// NanoMDM refuses a second command with the same UUID.
	_, err = n.Enqueue("0000-ENROLLMENT-ID", cmd)
	var ee *EnqueueError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "already exists") {
		t.Errorf("duplicate enqueue: %v", err)
	}

	// And something that is not a command.
	_, err = n.Enqueue("0000-ENROLLMENT-ID", []byte("<plist><dict/></plist>"))
	if !errors.As(err, &ee) || ee.StatusCode != http.StatusInternalServerError {
		t.Errorf("invalid command: %v", err)
	}

	if !strings.Contains(n.Logs(), "starting server") {
		t.Errorf("log lacks the start line:\n%s", n.Logs())
	}
	if strings.Contains(n.Logs(), n.apiKey) {
		t.Error("the API key appears in the log")
	}
}

func TestNewCommand(t *testing.T) {
	for _, tc := range []struct {
		name       string
		make       func() (string, []byte)
		reqType    string
		identifier string
		queries    int
	}{
		{"ProfileList", ProfileListCommand, "ProfileList", "", 0},
		{"RemoveProfile", func() (string, []byte) { return RemoveProfileCommand("com.example.mdm") }, "RemoveProfile", "com.example.mdm", 0},
		{"DeviceInformation", func() (string, []byte) { return DeviceInformationCommand() }, "DeviceInformation", "", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uuid, b := tc.make()
			var cmd struct {
				CommandUUID string
				Command     struct {
					RequestType string
					Identifier  string
					Queries     []string
				}
			}
			if err := plist.NewXMLDecoder(strings.NewReader(string(b))).Decode(&cmd); err != nil {
				t.Fatalf("decode: %v\n%s", err, b)
			}
			if cmd.CommandUUID != uuid || len(uuid) != 36 || strings.ToUpper(uuid) != uuid {
				t.Errorf("CommandUUID = %q, returned %q", cmd.CommandUUID, uuid)
			}
			if cmd.Command.RequestType != tc.reqType || cmd.Command.Identifier != tc.identifier || len(cmd.Command.Queries) != tc.queries {
				t.Errorf("command = %+v", cmd.Command)
			}
		})
	}
	if _, _, err := NewCommand("X", map[string]any{"RequestType": "Y"}); err == nil {
		t.Error("NewCommand accepted RequestType in params")
	}
	a, _ := ProfileListCommand()
	b, _ := ProfileListCommand()
	if a == b {
		t.Error("two commands got the same UUID")
	}
}

// Enqueue reports a dead NanoMDM as an error.
func TestNanoMDMStop(t *testing.T) {
	t.Parallel()
	n := startNanoMDM(t)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	_, cmd := ProfileListCommand()
	if _, err := n.Enqueue("x", cmd); err == nil {
		t.Fatal("Enqueue to a stopped NanoMDM succeeded")
	}
}
