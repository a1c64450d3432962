package caddymodule

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mdmauth/mdmauth/internal/checker"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mdm-auth",
		Usage: "check|list|show|revoke|reauth|block|unblock|offboard|remove|profile|stats|backup|restore [args]",
		Short: "Checks an account-driven enrollment deployment the way a device meets it",
		Long: `
Tools for deployments of the mdm_auth handler (Apple account-driven
enrollment).

  caddy mdm-auth check <user@domain>

walks service discovery and the first enrollment request against a live
deployment the way an iPhone, iPad or Mac does and reports every deviation
from Apple's rules, each with its fix. It exits 0 only when a device would
get through.

  caddy mdm-auth list | show | revoke | reauth | block | unblock | offboard | remove | profile | stats

operate a running deployment through Caddy's admin endpoint (--address, or
--config/--adapter to read it from the configuration), and

  caddy mdm-auth backup | restore

copy the token store (live through the admin endpoint, or offline).
"caddy mdm-auth <command> --help" tells more.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(newCheckCommand())
			addAdminCommands(cmd)
		},
	})
}

// newCheckCommand returns the "check" subcommand.
func newCheckCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check <user@domain>",
		Short: "Checks a deployment the way a device meets it",
		Long: `
Asks https://<domain>/.well-known/com.apple.remotemanagement with the
user-identifier and model-family a device sends (User-Agent
DeviceManagementClient/1.0, no cookies), follows redirects without copying
the query, POSTs a signed enrollment request to the advertised BaseURL
without Authorization, and checks the 401 challenge and, when the 401 names
one, the Enrollment SSO document. It never signs in.

Every deviation is printed with its fix: "✗" marks what makes a device fail,
"!" a warning. The exit status is 0 only when a device would get through.

--discovery-base replaces https://<domain>, e.g. to check the discovery URL
registered in Apple Business Manager or a staging host. --ca adds PEM root
certificates to the system roots (a private CA in a lab; a real device
trusts only the system roots).`,
		Args: cobra.ExactArgs(1),
	}
	c.Flags().String("model-family", checker.DefaultModelFamily, "Model family the device sends: AppleTV, iPad, iPhone, Mac, RealityDevice or Watch")
	c.Flags().String("discovery-base", "", "Ask this https://host[:port] instead of https://<domain>")
	c.Flags().StringArray("ca", nil, "PEM file of extra root certificates to trust (repeatable)")
	c.Flags().Duration("timeout", checker.DefaultTimeout, "Time limit of the whole check")
	c.Flags().Bool("json", false, "Print the report as JSON")
	c.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return runCheck(ctx, c.OutOrStdout(), fl)
	})
	return c
}

// runCheck runs the check the flags describe, prints the report to out and
// returns the exit status: 0 when a device would get through, 1 otherwise.
func runCheck(ctx context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
	if fl.NArg() != 1 {
		return 1, fmt.Errorf("usage: caddy mdm-auth check <user@domain>")
	}
	cas, err := fl.GetStringArray("ca")
	if err != nil {
		return 1, err
	}
	timeout, err := fl.GetDuration("timeout")
	if err != nil {
		return 1, err
	}
	roots, err := rootsWith(cas)
	if err != nil {
		return 1, err
	}
	rep, err := checker.Check(ctx, checker.Options{
		Identifier:    fl.Arg(0),
		ModelFamily:   fl.String("model-family"),
		DiscoveryBase: fl.String("discovery-base"),
		HTTPClient:    checker.NewClient(roots),
		Timeout:       timeout,
	})
	if err != nil {
		return 1, err
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		return 1, err
	}
	if !rep.OK {
		return 1, fmt.Errorf("a device would not enroll as %s: %d problem(s)", fl.Arg(0), len(rep.Fatal()))
	}
	return 0, nil
}

// rootsWith returns the system roots plus the certificates in the PEM
// files (nil, meaning the system roots, when there are none).
func rootsWith(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading --ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}
