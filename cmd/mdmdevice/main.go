// Command mdmdevice is an Apple device emulator for account-driven
// enrollment: it discovers the enrollment service, signs in through the
// web flow with a username and password, installs the enrollment profile
// and talks MDM, printing each step. It fails with a message naming the
// deviation when the server answers something a real device would refuse.
//
// Usage:
//
//	mdmdevice discover -discovery https://example.com -user alice@example.com [-family iPhone] [-roots roots.pem]
//	mdmdevice enroll -discovery https://example.com -user alice@example.com \
//	    -username alice -password … -family iPhone -ca-cert ca.pem -ca-key ca.key [-roots roots.pem]
//
// enroll issues the device's MDM identity from the given CA (standing in
// for SCEP), then sends Authenticate, TokenUpdate and one command poll. The
// password may also come from the MDMDEVICE_PASSWORD environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: mdmdevice <command> [flags]

commands:
  discover   run service discovery and print the answer
  enroll     enroll, then send Authenticate, TokenUpdate and one poll

run "mdmdevice <command> -h" for the flags of a command.
`

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "discover":
		err = runDiscover(ctx, args[1:], stdout, stderr)
	case "enroll":
		err = runEnroll(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mdmdevice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "mdmdevice: %v\n", err)
		return 1
	}
}

var errUsage = errors.New("usage error")
