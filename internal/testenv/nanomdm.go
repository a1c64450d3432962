package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NanoMDMOptions configures StartNanoMDM.
type NanoMDMOptions struct {
	// CAPath is a PEM bundle of the CAs that issue device identity certificates (-ca). Required.
	CAPath string
	// Args are extra command-line flags, e.g. "-cert-header", "X-Ssl-Client-Cert" or "-dump".
	Args []string
	// Binary overrides the NanoMDM executable; empty means NanoMDMBinary().
	Binary string
}

// NanoMDM is a running NanoMDM with in-memory storage, listening on 127.0.0.1.
type NanoMDM struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Addr is the listen address (host:port), for reverse proxies.
	Addr string

	apiKey string
	proc   *process
	client *http.Client
}

// StartNanoMDM starts NanoMDM with in-memory storage, a random API key and debug logging, and
// waits until /version answers. tb's cleanup kills it.
func StartNanoMDM(tb TB, opts NanoMDMOptions) (*NanoMDM, error) {
	tb.Helper()
	if opts.CAPath == "" {
		return nil, fmt.Errorf("testenv: StartNanoMDM: CAPath is required")
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = NanoMDMBinary(); err != nil {
			return nil, err
		}
	}
	key, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	// NanoMDM reads NANOMDM_* variables as flags: keep the caller's out.
	p := newProcess(NanoMDMName, logFile(dir, NanoMDMName), bin, nil, childEnv([]string{"NANOMDM_"}, nil), dir)
	registerCleanup(tb, p)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another process may take the free port first
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p.args = append([]string{
			"-storage", "inmem",
			"-storage-dsn", "",
			"-ca", opts.CAPath,
			"-api", key,
			"-listen", addr,
			"-debug",
		}, opts.Args...)
		if err := p.start(); err != nil {
			return nil, err
		}
		n := &NanoMDM{
			URL:    "http://" + addr,
			Addr:   addr,
			apiKey: key,
			proc:   p,
			client: &http.Client{Timeout: 30 * time.Second},
		}
		lastErr = p.waitReady(StartTimeout, probeOK(n.URL+"/version"))
		if lastErr == nil {
			return n, nil
		}
		_ = p.kill()
		if !strings.Contains(p.tail(tailLines), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// MDMURL returns the URL of NanoMDM's combined check-in and command endpoint.
func (n *NanoMDM) MDMURL() string { return n.URL + "/mdm" }

// Logs returns NanoMDM's output so far.
func (n *NanoMDM) Logs() string { return n.proc.logs() }

// LogPath returns the path of NanoMDM's log file.
func (n *NanoMDM) LogPath() string { return n.proc.logPath }

// Stop terminates NanoMDM (its in-memory state is lost).
func (n *NanoMDM) Stop() error { return n.proc.stop() }

// Start starts NanoMDM again after Stop, on the same address with the same
// API key, and waits until /version answers. Its in-memory state starts
// empty: enrollments and queued commands from before are gone.
func (n *NanoMDM) Start() error {
	if err := n.proc.start(); err != nil {
		return err
	}
	if err := n.proc.waitReady(StartTimeout, probeOK(n.URL+"/version")); err != nil {
		_ = n.proc.kill()
		return err
	}
	return nil
}

// EnqueueError is returned when NanoMDM refuses to enqueue a command.
type EnqueueError struct {
	StatusCode int    // HTTP status of the API answer
	Message    string // NanoMDM's error text, or the body when it was not JSON
}

// Error implements error.
func (e *EnqueueError) Error() string {
	return fmt.Sprintf("testenv: nanomdm enqueue: status %d: %s", e.StatusCode, e.Message)
}

// enqueueResult mirrors NanoMDM's api.APIResult JSON.
type enqueueResult struct {
	Status map[string]struct {
		PushError    string `json:"push_error"`
		PushResult   string `json:"push_result"`
		CommandError string `json:"command_error"`
	} `json:"status"`
	NoPush       bool   `json:"no_push"`
	PushError    string `json:"push_error"`
	CommandError string `json:"command_error"`
	CommandUUID  string `json:"command_uuid"`
	RequestType  string `json:"request_type"`
}

// Enqueue queues the raw command plist for the enrollment id (a UDID or EnrollmentID) through
// PUT /v1/enqueue/<id>?nopush=1 and returns the command's UUID. No APNs push is sent, so no
// push certificate is needed; the device gets the command on its next poll.
func (n *NanoMDM) Enqueue(id string, commandPlist []byte) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := n.URL + "/v1/enqueue/" + url.PathEscape(id) + "?nopush=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(commandPlist))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("nanomdm", n.apiKey)
	resp, err := n.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("testenv: nanomdm enqueue: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("testenv: nanomdm enqueue: %w", err)
	}
	var res enqueueResult
	if err := json.Unmarshal(body, &res); err != nil {
		return "", &EnqueueError{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	var msgs []string
	if res.CommandError != "" {
		msgs = append(msgs, res.CommandError)
	}
	if res.PushError != "" {
		msgs = append(msgs, "push: "+res.PushError)
	}
	for id, st := range res.Status {
		if st.CommandError != "" {
			msgs = append(msgs, id+": "+st.CommandError)
		}
	}
	if resp.StatusCode != http.StatusOK || len(msgs) > 0 {
		if len(msgs) == 0 {
			msgs = append(msgs, strings.TrimSpace(string(body)))
		}
		return "", &EnqueueError{StatusCode: resp.StatusCode, Message: strings.Join(msgs, "; ")}
	}
	if res.CommandUUID == "" {
		return "", &EnqueueError{StatusCode: resp.StatusCode, Message: "no command_uuid in answer"}
	}
	return res.CommandUUID, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("testenv: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
