// Command mdmsoak is the soak test of mdm_auth. On loopback it builds Caddy
// from this repository, starts NanoMDM v0.9.0 and the zitadel example
// OpenID provider, keeps a fleet of emulated devices busy for a long time
// while their tokens expire, refresh and get revoked through the admin API,
// and samples Caddy's goroutines, open files, memory and its store. It
// prints a report with a verdict per criterion, writes the figures as JSON
// and exits non-zero when a criterion failed. See docs/soak.md.
//
//	go run ./cmd/mdmsoak -devices 10000 -duration 30m     # the documented soak
//	go run ./cmd/mdmsoak -devices 1000 -duration 2m       # the size CI runs
//	go run ./cmd/mdmsoak -from .bin/mdmsoak.json -docs docs/soak.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mdmauth/mdmauth/internal/soak"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// defaultOut is where the figures go unless -out says otherwise: .bin is
// not under version control.
const defaultOut = ".bin/mdmsoak.json"

func main() {
	pass, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mdmsoak: %v\n", err)
		os.Exit(2)
	}
	if !pass {
		os.Exit(1)
	}
}

func run() (bool, error) {
	d := soak.DefaultOptions()
	var (
		devices     = flag.Int("devices", d.Devices, "emulated devices")
		users       = flag.Int("users", d.Users, "accounts at the provider (device i belongs to user i mod users)")
		oauth2Share = flag.Float64("oauth2-share", d.OAuth2Share, "share of the devices on the site with sign_in oauth2")
		duration    = flag.Duration("duration", d.Duration, "length of the soak (after the setup)")
		warmup      = flag.Duration("warmup", 0, "first part of the soak whose samples are not judged (default duration/6)")
		sampleEvery = flag.Duration("sample-every", 0, "sampling period (default duration/60, at least 1s)")
		rate        = flag.Float64("rate", d.Rate, "at most this many device visits per second (0: as fast as the workers go)")
		workers     = flag.Int("workers", d.Workers, "visits at a time")
		adminShare  = flag.Float64("admin-share", d.AdminShare, "share of visits that start with an admin action")
		cmdShare    = flag.Float64("command-share", d.CommandShare, "share of visits with a command queued at NanoMDM")
		checkShare  = flag.Float64("checkin-share", d.CheckInShare, "share of visits sending a TokenUpdate")
		reShare     = flag.Float64("reenroll-share", d.ReenrollShare, "share of visits that re-enroll the device")
		expireShare = flag.Float64("expire-share", d.ExpireShare, "share of the first tokens that expire during the soak")
		seed        = flag.Uint64("seed", 0, "seed of the run's choices (0: random)")
		caddyBin    = flag.String("caddy", "", "Caddy with mdm_auth to use instead of building ./cmd/caddy")
		out         = flag.String("out", defaultOut, `write the report as JSON to this file (relative to the repository when left as is); "" does not`)
		jsonOut     = flag.Bool("json", false, "print the report as JSON on stdout instead of text")
		docs        = flag.String("docs", "", "replace the results section of this Markdown file (docs/soak.md)")
		from        = flag.String("from", "", "do not run: render the report of this JSON file")
		verbose     = flag.Bool("v", false, "also print the test environment's messages")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mdmsoak [flags]\n\nSoaks mdm_auth with real parts on loopback; see docs/soak.md.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	var r *soak.Report
	if *from != "" {
		var err error
		if r, err = soak.ReadJSON(*from); err != nil {
			return false, err
		}
	} else {
		o := d
		o.Devices, o.Users, o.OAuth2Share = *devices, *users, *oauth2Share
		o.Duration, o.Warmup, o.SampleEvery = *duration, *warmup, *sampleEvery
		o.Rate, o.Workers = *rate, *workers
		o.AdminShare, o.CommandShare, o.CheckInShare, o.ReenrollShare, o.ExpireShare = *adminShare, *cmdShare, *checkShare, *reShare, *expireShare
		o.Seed, o.CaddyBinary = *seed, *caddyBin
		var err error
		if r, err = measure(o, *verbose); err != nil {
			return false, err
		}
		r.Command = commandLine()
	}
	if *jsonOut {
		if err := r.WriteJSON(os.Stdout); err != nil {
			return false, err
		}
	} else if err := r.WriteText(os.Stdout); err != nil {
		return false, err
	}
	if *out != "" && *from == "" {
		path := *out
		if path == defaultOut {
			if root, err := testenv.RepoRoot(); err == nil {
				path = filepath.Join(root, defaultOut)
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return false, err
		}
		f, err := os.Create(path)
		if err != nil {
			return false, err
		}
		if err := r.WriteJSON(f); err != nil {
			f.Close()
			return false, err
		}
		if err := f.Close(); err != nil {
			return false, err
		}
		fmt.Fprintf(os.Stderr, "mdmsoak: report written to %s\n", path)
	}
	if *docs != "" {
		if err := soak.UpdateDocs(*docs, r); err != nil {
			return false, err
		}
		fmt.Fprintf(os.Stderr, "mdmsoak: results written into %s\n", *docs)
	}
	return r.Pass, nil
}

// commandLine is how the run was started, for the report and the docs.
func commandLine() string {
	args := []string{"go run ./cmd/mdmsoak"}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "docs" || f.Name == "out" || f.Name == "v" || f.Name == "json" {
			return
		}
		args = append(args, "-"+f.Name+" "+f.Value.String())
	})
	return strings.Join(args, " ")
}

// measure runs the soak in a scope of its own, stopped on SIGINT/SIGTERM.
func measure(o soak.Options, verbose bool) (*soak.Report, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	var envLog func(string, ...any)
	if verbose {
		envLog = logf
	}
	var r *soak.Report
	err := testenv.RunScoped(envLog, func(ctx context.Context, scope *testenv.Scope) (err error) {
		o.TB, o.Logf = scope, logf
		r, err = soak.Run(ctx, o)
		return err
	})
	return r, err
}
