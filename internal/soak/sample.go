package soak

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mdmauth/mdmauth/internal/bench"
)

// Sample is one reading of Caddy and its store during the run.
type Sample struct {
	// T is the time since the soak started, in seconds. AfterLoad marks
	// the last sample, taken once the workers stopped: it is reported, not
	// judged.
	T         float64 `json:"t"`
	AfterLoad bool    `json:"after_load,omitempty"`
	// Goroutines is the total of Caddy's goroutine profile.
	Goroutines int `json:"goroutines"`
	// FDs is the number of Caddy's open file descriptors.
	FDs int `json:"fds"`
	// RSS is Caddy's resident set; Anon and File its anonymous (heap,
	// stacks) and file-backed (executable, mapped store tables) parts.
	RSS  int64 `json:"rss_bytes"`
	Anon int64 `json:"anon_bytes"`
	File int64 `json:"file_bytes"`
	// CPU is Caddy's user + system time since it started, in seconds.
	CPU float64 `json:"cpu_s"`
	// StoreDisk is the space the store directory takes on disk (allocated
	// blocks).
	StoreDisk int64 `json:"store_disk_bytes"`
	// Counts are the run's counters at the sample.
	Counts Progress `json:"counts"`
}

// Progress is a snapshot of the run's running totals.
type Progress struct {
	Requests     int64 `json:"mdm_requests"`
	SignIns      int64 `json:"sign_ins"`
	Refreshes    int64 `json:"refreshes"`
	AdminActions int64 `json:"admin_actions"`
	TokensIssued int64 `json:"tokens_issued"`
	Errors       int64 `json:"errors"`
}

// Sampler reads a Caddy process and its store.
type Sampler struct {
	// PID is Caddy's process id.
	PID int
	// AdminURL is Caddy's admin endpoint (http://host:port), which serves
	// its goroutine profile (/debug/pprof/goroutine?debug=1).
	AdminURL string
	// StoreDir is the store's directory.
	StoreDir string
	// Client talks to the admin endpoint.
	Client *http.Client
}

// Sample reads Caddy's figures and the store's size on disk.
func (s *Sampler) Sample(ctx context.Context) (Sample, error) {
	var out Sample
	var err error
	if out.Goroutines, err = s.goroutines(ctx); err != nil {
		return out, err
	}
	if out.FDs, err = CountFDs(s.PID); err != nil {
		return out, err
	}
	p, err := bench.ReadProc(s.PID)
	if err != nil {
		return out, err
	}
	out.RSS, out.Anon, out.File, out.CPU = p.RSS, p.Anon, p.File, p.CPU.Seconds()
	if out.StoreDisk, err = DirDiskBytes(s.StoreDir); err != nil {
		return out, err
	}
	return out, nil
}

// goroutines reads the total of Caddy's goroutine profile.
func (s *Sampler) goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("soak: goroutine profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("soak: goroutine profile: status %d", resp.StatusCode)
	}
	n, err := ParseGoroutineTotal(resp.Body)
	_, _ = io.Copy(io.Discard, resp.Body)
	return n, err
}

// ParseGoroutineTotal reads the total from a goroutine profile in text
// form (debug=1), whose first line is "goroutine profile: total N".
func ParseGoroutineTotal(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("soak: goroutine profile: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("soak: goroutine profile starts with %q", clip(line, 60))
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("soak: goroutine profile: bad total %q", rest)
	}
	return n, nil
}

// CountFDs returns the number of open file descriptors of pid (0: this
// process), from /proc/<pid>/fd.
func CountFDs(pid int) (int, error) {
	dir := "/proc/self/fd"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/fd"
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("soak: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("soak: %w", err)
	}
	n := len(names)
	if pid == 0 {
		n-- // the directory itself, open while it is read
	}
	return n, nil
}

// DirDiskBytes returns the space the files under dir take on disk: their
// allocated blocks (Badger preallocates sparse files, whose length says
// little), or their length where the system does not tell.
func DirDiskBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a table compacted away meanwhile
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += int64(st.Blocks) * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("soak: store size: %w", err)
	}
	return total, nil
}

// clip shortens s for an error message.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
