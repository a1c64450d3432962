package esso

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Declaration types with a role in the Enrollment SSO document.
const (
	TypeActivationSimple = "com.apple.activation.simple"
	TypeAppManaged       = "com.apple.configuration.app.managed"
	TypeLegacy           = "com.apple.configuration.legacy"
	assetTypePrefix      = "com.apple.asset."
)

// declarationKeys are the keys a declaration may have.
var declarationKeys = map[string]bool{"Type": true, "Identifier": true, "ServerToken": true, "Payload": true}

// declaration is one decoded declaration.
type declaration struct {
	Type, Identifier string
	Payload          map[string]json.RawMessage
}

// checkDeclarations validates the declaration set: each a JSON object with
// Type, Identifier and Payload; exactly one com.apple.activation.simple that
// references every configuration; com.apple.configuration.app.managed for
// the SSO app (exactly one with AppStoreID = iTunesStoreID, or in test mode
// one per AppID with its BundleID); com.apple.asset.* and
// com.apple.configuration.legacy; nothing else.
func checkDeclarations(raws [][]byte, iTunesStoreID int64, testMode bool, appIDs []string) error {
	var decls []*declaration
	ids := map[string]bool{}
	for i, raw := range raws {
		d, err := parseDeclaration(raw)
		if err != nil {
			return problem("declaration %d: %v", i, err)
		}
		if ids[d.Identifier] {
			return problem("declaration Identifier %q is used twice", d.Identifier)
		}
		ids[d.Identifier] = true
		decls = append(decls, d)
	}
	var activations, apps []*declaration
	configs := map[string]bool{}
	for _, d := range decls {
		switch {
		case d.Type == TypeActivationSimple:
			activations = append(activations, d)
		case d.Type == TypeAppManaged:
			apps = append(apps, d)
			configs[d.Identifier] = true
		case d.Type == TypeLegacy:
			if err := checkLegacy(d); err != nil {
				return err
			}
			configs[d.Identifier] = true
		case strings.HasPrefix(d.Type, assetTypePrefix) && len(d.Type) > len(assetTypePrefix):
		default:
			return problem("declaration %q has Type %s; only %s, %s, %s and %s* are allowed",
				d.Identifier, d.Type, TypeActivationSimple, TypeAppManaged, TypeLegacy, assetTypePrefix)
		}
	}
	if len(activations) != 1 {
		return problem("the declarations need exactly one %s, found %d", TypeActivationSimple, len(activations))
	}
	if err := checkActivation(activations[0], configs); err != nil {
		return err
	}
	if testMode {
		return checkTestApps(apps, appIDs)
	}
	if len(apps) != 1 {
		return problem("the declarations need exactly one %s (the SSO app), found %d", TypeAppManaged, len(apps))
	}
	raw, ok := apps[0].Payload["AppStoreID"]
	if !ok {
		return problem("%s %q has no AppStoreID; it must equal ITunesStoreID %d", TypeAppManaged, apps[0].Identifier, iTunesStoreID)
	}
	id, err := appStoreID(raw)
	if err != nil {
		return problem("%s %q: AppStoreID %s is not a number or numeric string", TypeAppManaged, apps[0].Identifier, clip(string(raw)))
	}
	if id != iTunesStoreID {
		return problem("%s %q has AppStoreID %d, but ITunesStoreID is %d; they must be the same app", TypeAppManaged, apps[0].Identifier, id, iTunesStoreID)
	}
	return nil
}

// checkActivation requires StandardConfigurations to name exactly the
// configurations present.
func checkActivation(a *declaration, configs map[string]bool) error {
	raw, ok := a.Payload["StandardConfigurations"]
	var refs []string
	if !ok || json.Unmarshal(raw, &refs) != nil {
		return problem("activation %q needs Payload.StandardConfigurations, an array of configuration identifiers", a.Identifier)
	}
	seen := map[string]bool{}
	for _, r := range refs {
		if !configs[r] {
			return problem("activation %q references %q, which is not a configuration among the declarations", a.Identifier, r)
		}
		seen[r] = true
	}
	for _, c := range sortedKeys(configs) {
		if !seen[c] {
			return problem("activation %q does not reference configuration %q; it must reference every configuration", a.Identifier, c)
		}
	}
	return nil
}

// checkTestApps requires, in test mode, one app configuration per AppID,
// matched by BundleID.
func checkTestApps(apps []*declaration, appIDs []string) error {
	want := map[string]bool{}
	for _, id := range appIDs {
		want[bundleID(id)] = true
	}
	got := map[string]bool{}
	for _, a := range apps {
		var b string
		if raw, ok := a.Payload["BundleID"]; !ok || json.Unmarshal(raw, &b) != nil || b == "" {
			return problem("test mode: %s %q needs a BundleID naming one of the AppIDs' bundle ids", TypeAppManaged, a.Identifier)
		}
		if !want[b] {
			return problem("test mode: %s %q has BundleID %q, which is not the bundle id of any AppID", TypeAppManaged, a.Identifier, b)
		}
		got[b] = true
	}
	for _, b := range sortedKeys(want) {
		if !got[b] {
			return problem("test mode: no %s with BundleID %q for its AppID", TypeAppManaged, b)
		}
	}
	return nil
}

// checkLegacy checks a ProfileURL, when given, is an https URL.
func checkLegacy(d *declaration) error {
	raw, ok := d.Payload["ProfileURL"]
	if !ok {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return problem("%s %q: ProfileURL is not a string", TypeLegacy, d.Identifier)
	}
	if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" {
		return problem("%s %q: ProfileURL %q must be an https URL", TypeLegacy, d.Identifier, s)
	}
	return nil
}

// parseDeclaration decodes one declaration strictly.
func parseDeclaration(raw []byte) (*declaration, error) {
	if len(raw) > MaxProfileSize {
		return nil, fmt.Errorf("%d bytes, the limit is %d", len(raw), MaxProfileSize)
	}
	obj, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !declarationKeys[k] {
			return nil, fmt.Errorf("unknown key %q (a declaration has Type, Identifier, ServerToken and Payload)", k)
		}
	}
	d := &declaration{}
	for _, f := range []struct {
		key string
		dst *string
	}{{"Type", &d.Type}, {"Identifier", &d.Identifier}} {
		raw, ok := obj[f.key]
		if !ok || json.Unmarshal(raw, f.dst) != nil || *f.dst == "" {
			return nil, fmt.Errorf("needs a non-empty string %s", f.key)
		}
	}
	if raw, ok := obj["ServerToken"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, fmt.Errorf("%q: ServerToken is not a string", d.Identifier)
		}
	}
	raw, ok := obj["Payload"]
	if !ok {
		return nil, fmt.Errorf("%q has no Payload", d.Identifier)
	}
	if d.Payload, err = parseObject(raw); err != nil {
		return nil, fmt.Errorf("%q: Payload: %w", d.Identifier, err)
	}
	return d, nil
}

// parseObject decodes one JSON object; duplicate keys and trailing data are
// errors.
func parseObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON object key")
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON value for %q: %w", key, err)
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

// appStoreID reads an AppStoreID given as a JSON integer or a numeric
// string.
func appStoreID(raw json.RawMessage) (int64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a decimal integer")
	}
	return strconv.ParseInt(s, 10, 64)
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
