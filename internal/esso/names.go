package esso

import (
	"regexp"
	"strconv"
	"strings"
)

// appIDPattern is an App ID: a ten-character Team ID, a dot, a bundle id.
var appIDPattern = regexp.MustCompile(`^[A-Z0-9]{10}\.[A-Za-z0-9.-]+$`)

// checkAppIDs enforces the AppIDs rules: test mode only, then at least one,
// each TEAMID.bundle.id, no duplicates.
func checkAppIDs(ids []string, testMode bool) error {
	if !testMode {
		if len(ids) > 0 {
			return problem("AppIDs are for test mode only (documents served through %s); a standard document must not carry them", DeveloperHeader)
		}
		return nil
	}
	if len(ids) == 0 {
		return problem("test mode needs at least one AppID (TEAMID.bundle.id, e.g. ABCDE12345.com.example.sso): a test device ignores ITunesStoreID")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !appIDPattern.MatchString(id) || strings.HasSuffix(id, ".") || strings.Contains(id, "..") {
			return problem("AppID %q is not TEAMID.bundle.id (a ten-character upper-case Team ID, a dot, the bundle id)", id)
		}
		if seen[id] {
			return problem("AppID %q is listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// bundleID returns the bundle id part of a valid App ID.
func bundleID(appID string) string {
	_, b, _ := strings.Cut(appID, ".")
	return b
}

var (
	servicePattern = regexp.MustCompile(`^[a-z]+$`)
	labelPattern   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// associatedDomainModes are the ?mode= values an associated domain may carry.
var associatedDomainModes = map[string]bool{"developer": true, "managed": true, "developer+managed": true}

// checkAssociatedDomains requires every entry to be "service:host" or a
// host, optionally with a port and a ?mode= suffix; no scheme, path or
// duplicates.
func checkAssociatedDomains(domains []string) error {
	seen := map[string]bool{}
	for _, d := range domains {
		if err := checkAssociatedDomain(d); err != nil {
			return err
		}
		if seen[d] {
			return problem("associated domain %q is listed twice", d)
		}
		seen[d] = true
	}
	return nil
}

func checkAssociatedDomain(d string) error {
	switch {
	case d == "":
		return problem("empty associated domain")
	case strings.Contains(d, "://"):
		return problem("associated domain %q has a URL scheme; write service:host, e.g. authsrv:login.example.com", d)
	case strings.ContainsAny(d, "/ \t#@"):
		return problem("associated domain %q is not service:host (no path, spaces or user info)", d)
	}
	rest, mode, hasMode := strings.Cut(d, "?")
	if hasMode {
		m, ok := strings.CutPrefix(mode, "mode=")
		if !ok || !associatedDomainModes[m] {
			return problem("associated domain %q: the only suffix allowed is ?mode=developer, ?mode=managed or ?mode=developer+managed", d)
		}
	}
	// "authsrv:host" names a service; "host:8443" is a host and a port.
	if svc, host, ok := strings.Cut(rest, ":"); ok && servicePattern.MatchString(svc) {
		if svc == "http" || svc == "https" {
			return problem("associated domain %q has a URL scheme; write service:host, e.g. authsrv:login.example.com", d)
		}
		rest = host
	}
	host, port, hasPort := strings.Cut(rest, ":")
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return problem("associated domain %q has an invalid port %q", d, port)
		}
	}
	if !validHost(host) {
		return problem("associated domain %q: %q is not a host name", d, host)
	}
	return nil
}

// validHost accepts a DNS name, optionally starting with the "*." wildcard.
func validHost(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if !labelPattern.MatchString(label) {
			return false
		}
	}
	return true
}
