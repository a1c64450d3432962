package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
)

// deviceFlags are the flags shared by the commands.
type deviceFlags struct {
	discovery, user, family, product, osBuild, lang string
	roots                                           string
	insecureHTTP                                    bool
	timeout                                         time.Duration
}

func (f *deviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.discovery, "discovery", "", "discovery base, scheme://host[:port] (required)")
	fs.StringVar(&f.user, "user", "", "user identifier as typed in Settings, e.g. alice@example.com (required)")
	fs.StringVar(&f.family, "family", "iPhone", "model family: iPhone, iPad, Mac, RealityDevice, AppleTV, Watch")
	fs.StringVar(&f.product, "product", "", "product (model identifier); default by family")
	fs.StringVar(&f.osBuild, "os", "", "OS build version; default by family")
	fs.StringVar(&f.lang, "lang", "en-US", "device language")
	fs.StringVar(&f.roots, "roots", "", "PEM file of TLS root certificates (default: system roots)")
	fs.BoolVar(&f.insecureHTTP, "insecure-http", false, "allow plain http:// URLs (lab only; a real device refuses them)")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "overall time limit")
}

var defaultProducts = map[string][2]string{
	"iPhone":        {"iPhone17,2", "23A341"},
	"iPad":          {"iPad16,3", "23A341"},
	"Mac":           {"Mac14,2", "25A354"},
	"RealityDevice": {"RealityDevice14,1", "23M341"},
	"AppleTV":       {"AppleTV14,1", "23J582"},
	"Watch":         {"Watch7,1", "23R352"},
}

func (f *deviceFlags) config(stdout io.Writer) (device.Config, error) {
	if f.discovery == "" || f.user == "" {
		return device.Config{}, fmt.Errorf("%w: -discovery and -user are required", errUsage)
	}
	def := defaultProducts[f.family]
	if f.product == "" {
		f.product = def[0]
	}
	if f.osBuild == "" {
		f.osBuild = def[1]
	}
	client, err := httpClient(f.roots)
	if err != nil {
		return device.Config{}, err
	}
	return device.Config{
		Family:         f.family,
		Product:        f.product,
		OSVersion:      f.osBuild,
		Language:       f.lang,
		UserIdentifier: f.user,
		DiscoveryBase:  strings.TrimSuffix(f.discovery, "/"),
		HTTPClient:     client,
		InsecureHTTP:   f.insecureHTTP,
		Log: func(step, msg string) {
			fmt.Fprintf(stdout, "[%s] %s\n", step, msg)
		},
	}, nil
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

func runDiscover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdmdevice discover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var df deviceFlags
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := df.config(stdout)
	if err != nil {
		return err
	}
	d, err := device.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, df.timeout)
	defer cancel()
	version, baseURL, err := d.Discover(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Version: %s\nBaseURL: %s\n", version, baseURL)
	return nil
}

func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdmdevice enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var df deviceFlags
	df.register(fs)
	username := fs.String("username", "", "username typed into the sign-in form (required)")
	password := fs.String("password", "", "password typed into the sign-in form (or $MDMDEVICE_PASSWORD)")
	caCert := fs.String("ca-cert", "", "PEM CA certificate that issues the MDM identity (required)")
	caKey := fs.String("ca-key", "", "PEM private key of that CA (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *password == "" {
		*password = os.Getenv("MDMDEVICE_PASSWORD")
	}
	if *username == "" || *caCert == "" || *caKey == "" {
		return fmt.Errorf("%w: -username, -ca-cert and -ca-key are required", errUsage)
	}
	cfg, err := df.config(stdout)
	if err != nil {
		return err
	}
	ca, err := loadIdentity(*caCert, *caKey)
	if err != nil {
		return err
	}
	if cfg.Identity, err = device.NewIssued(ca, "mdmdevice "+df.user); err != nil {
		return err
	}
	ua := device.SafariUserAgent
	if df.family == "Mac" {
		ua = device.SafariMacUserAgent
	}
	cfg.Browser = &device.FormBrowser{Client: cfg.HTTPClient, Username: *username, Password: *password, UserAgent: ua}
	d, err := device.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, df.timeout)
	defer cancel()
	p, err := d.Enroll(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled: mode %s, managed account %s, id %s\n", p.EnrollmentMode, p.AssignedManagedAppleID, d.EnrollmentKey())
	if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
		return err
	}
	if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
		return err
	}
	channels := []device.Channel{device.DeviceChannel}
	if df.family == "Mac" {
		if err := d.TokenUpdate(ctx, device.UserChannel); err != nil {
			return err
		}
		channels = append(channels, device.UserChannel)
	}
	for _, ch := range channels {
		cmd, err := d.Poll(ctx, ch)
		if err != nil {
			return err
		}
		if cmd == nil {
			fmt.Fprintf(stdout, "%s: no command queued\n", ch)
		} else {
			fmt.Fprintf(stdout, "%s: command %s %s queued (left unanswered)\n", ch, cmd.RequestType, cmd.UUID)
		}
	}
	fmt.Fprintf(stdout, "done (sign-in prompts after enrollment: %d)\n", d.Prompts())
	return nil
}
