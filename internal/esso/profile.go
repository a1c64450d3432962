package esso

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/micromdm/plist"
)

// MaxProfileSize bounds the configuration profile and each declaration.
const MaxProfileSize = 1 << 20

// Payload types allowed in the Enrollment SSO configuration profile.
const (
	PayloadExtensibleSSO = "com.apple.extensiblesso"
)

// certificatePayloads are the certificate payload types the profile may
// carry beside the SSO payloads.
var certificatePayloads = map[string]bool{
	"com.apple.security.root":   true,
	"com.apple.security.pkcs1":  true,
	"com.apple.security.pem":    true,
	"com.apple.security.pkcs12": true,
}

// checkProfile validates the Enrollment SSO configuration profile: an
// unsigned XML Configuration profile whose payloads are all
// com.apple.extensiblesso or certificate payloads, at least one of them
// com.apple.extensiblesso.
func checkProfile(raw []byte) error {
	if len(raw) > MaxProfileSize {
		return problem("ConfigurationProfile is %d bytes; the limit is %d", len(raw), MaxProfileSize)
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n\ufeff")
	switch {
	case len(trimmed) == 0:
		return problem("ConfigurationProfile is empty")
	case bytes.HasPrefix(trimmed, []byte("bplist")):
		return problem("ConfigurationProfile is a binary property list; give the XML .mobileconfig")
	case trimmed[0] == 0x30:
		return problem("ConfigurationProfile looks signed (CMS); give the unsigned XML .mobileconfig")
	case trimmed[0] != '<':
		return problem("ConfigurationProfile is not an XML property list")
	}
	var top map[string]any
	dec := plist.NewXMLDecoder(io.LimitReader(bytes.NewReader(raw), MaxProfileSize))
	if err := dec.Decode(&top); err != nil {
		return problem("ConfigurationProfile is not an XML property list dictionary: %v", err)
	}
	if err := checkPayloadKeys(top, "ConfigurationProfile"); err != nil {
		return err
	}
	if t := top["PayloadType"]; t != "Configuration" {
		return problem("ConfigurationProfile has top-level PayloadType %q, want Configuration", t)
	}
	items, ok := top["PayloadContent"].([]any)
	if !ok || len(items) == 0 {
		return problem("ConfigurationProfile has no PayloadContent array of payloads")
	}
	uuids := map[string]bool{top["PayloadUUID"].(string): true}
	sso := 0
	for i, it := range items {
		where := fmt.Sprintf("ConfigurationProfile payload %d", i)
		p, ok := it.(map[string]any)
		if !ok {
			return problem("%s is not a dictionary", where)
		}
		if err := checkPayloadKeys(p, where); err != nil {
			return err
		}
		typ := p["PayloadType"].(string)
		where = fmt.Sprintf("%s (%s)", where, p["PayloadIdentifier"])
		switch {
		case typ == PayloadExtensibleSSO:
			if err := checkExtensibleSSO(p, where); err != nil {
				return err
			}
			sso++
		case certificatePayloads[typ]:
		default:
			return problem("%s has PayloadType %s; the Enrollment SSO profile may hold only %s and certificate payloads (%s)",
				where, typ, PayloadExtensibleSSO, strings.Join(sortedKeys(certificatePayloads), ", "))
		}
		uuid := p["PayloadUUID"].(string)
		if uuids[uuid] {
			return problem("%s repeats PayloadUUID %s", where, uuid)
		}
		uuids[uuid] = true
	}
	if sso == 0 {
		return problem("ConfigurationProfile has no %s payload", PayloadExtensibleSSO)
	}
	return nil
}

// checkPayloadKeys requires the standard payload keys.
func checkPayloadKeys(p map[string]any, where string) error {
	for _, k := range []string{"PayloadType", "PayloadIdentifier", "PayloadUUID"} {
		if s, ok := p[k].(string); !ok || s == "" {
			return problem("%s has no string %s", where, k)
		}
	}
	switch v := p["PayloadVersion"].(type) {
	case int64:
		if v == 1 {
			return nil
		}
	case uint64:
		if v == 1 {
			return nil
		}
	}
	return problem("%s has PayloadVersion %v, want the integer 1", where, p["PayloadVersion"])
}

// checkExtensibleSSO checks the keys an ExtensibleSingleSignOn payload
// requires: ExtensionIdentifier, Type (Redirect or Credential), and URLs
// for Redirect or Hosts for Credential.
func checkExtensibleSSO(p map[string]any, where string) error {
	if s, ok := p["ExtensionIdentifier"].(string); !ok || s == "" {
		return problem("%s has no ExtensionIdentifier (the bundle id of the SSO extension)", where)
	}
	switch p["Type"] {
	case "Redirect":
		urls, ok := p["URLs"].([]any)
		if !ok || len(urls) == 0 {
			return problem("%s is a Redirect extension without URLs", where)
		}
		for _, v := range urls {
			s, _ := v.(string)
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
				return problem("%s has URL %q; URLs must be http(s) prefixes without query or fragment", where, s)
			}
		}
	case "Credential":
		hosts, ok := p["Hosts"].([]any)
		if !ok || len(hosts) == 0 {
			return problem("%s is a Credential extension without Hosts", where)
		}
		for _, v := range hosts {
			if s, ok := v.(string); !ok || s == "" {
				return problem("%s has an empty or non-string entry in Hosts", where)
			}
		}
	default:
		return problem("%s has Type %v, want Redirect or Credential", where, p["Type"])
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
