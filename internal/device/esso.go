package device

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/micromdm/plist"
)

// Enrollment SSO headers: a server adds one to the enrollment 401, naming
// the URL of the Enrollment SSO document.
const (
	ESSOHeader          = "X-Apple-MDM-ESSO"
	ESSODeveloperHeader = "X-Apple-MDM-ESSO-Developer" // test devices (Developer > Enrollment SSO)
)

// ESSODocument is an Enrollment SSO document as the device fetched and
// checked it.
type ESSODocument struct {
	URL       string // where the document was fetched (after redirects)
	Developer bool   // named by X-Apple-MDM-ESSO-Developer (test mode)

	ITunesStoreID                          int64 // 0 when absent (developer documents)
	AppIDs                                 []string
	AssociatedDomains                      []string
	AssociatedDomainsEnableDirectDownloads bool

	// ConfigurationProfile is the decoded profile plist (the CMS content
	// when it came signed); nil when the document has none.
	ConfigurationProfile []byte
	ProfileSigned        bool
	// ProfilePayloadTypes lists the PayloadType of each profile payload.
	ProfilePayloadTypes []string

	Declarations []ESSODeclaration
}

// ESSODeclaration is one declaration of an Enrollment SSO document.
type ESSODeclaration struct {
	Type       string
	Identifier string
	Raw        []byte // the decoded JSON
}

// ESSO returns the Enrollment SSO document fetched during the last Enroll,
// or nil when the enrollment 401 named none.
func (d *Device) ESSO() *ESSODocument {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.esso
}

// essoKeys are the keys of an Enrollment SSO document.
var essoKeys = map[string]bool{
	"iTunesStoreID": true, "AppIDs": true, "AssociatedDomains": true,
	"AssociatedDomainsEnableDirectDownloads": true, "ConfigurationProfile": true, "Declarations": true,
}

// essoProfilePayloads are the payload types the Enrollment SSO profile may
// hold.
var essoProfilePayloads = map[string]bool{
	"com.apple.extensiblesso":   true,
	"com.apple.security.root":   true,
	"com.apple.security.pkcs1":  true,
	"com.apple.security.pem":    true,
	"com.apple.security.pkcs12": true,
}

var (
	appIDPattern     = regexp.MustCompile(`^[A-Z0-9]{10}\.[A-Za-z0-9.-]+$`)
	jsonIntegerRegex = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
)

// enrollmentSSO handles the Enrollment SSO header of the enrollment 401:
// none → nil; on a Mac → deviation; otherwise the document is fetched
// and checked.
func (d *Device) enrollmentSSO(ctx context.Context, h http.Header) (*ESSODocument, error) {
	std, dev := h.Values(ESSOHeader), h.Values(ESSODeveloperHeader)
	if len(std) == 0 && len(dev) == 0 {
		return nil, nil
	}
	if d.mac {
		name := ESSOHeader
		if len(std) == 0 {
			name = ESSODeveloperHeader
		}
		return nil, deviation(StepESSO, "enrollment 401 for a Mac carries %s: Enrollment SSO does not exist on macOS, never send it for model-family Mac", name)
	}
	name, vals, developer := ESSOHeader, std, false
	switch {
	case d.cfg.DeveloperESSO && len(dev) > 0:
		name, vals, developer = ESSODeveloperHeader, dev, true
	case len(dev) > 0 && !d.cfg.DeveloperESSO:
		d.log(StepESSO, "note: %s ignored (Developer > Enrollment SSO is off on this device)", ESSODeveloperHeader)
	}
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, deviation(StepESSO, "%d %s headers; send exactly one URL", len(vals), name)
	}
	u, err := d.checkURL(StepESSO, name+" URL", vals[0])
	if err != nil {
		return nil, err
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", userAgentDMC)
		resp, body, err := d.do(req, limitLarge)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", StepESSO, err)
		}
		d.log(StepESSO, "GET %s (from %s) → %d", shortURL(u), name, resp.StatusCode)
		if isRedirect(resp.StatusCode) {
			if hop >= maxRedirects {
				return nil, deviation(StepESSO, "more than %d redirects", maxRedirects)
			}
			next, err := redirectTarget(StepESSO, u, resp)
			if err != nil {
				return nil, err
			}
			if u, err = d.checkURL(StepESSO, "Enrollment SSO redirect", next.String()); err != nil {
				return nil, err
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, &ProtocolError{Step: StepESSO,
				Reason: fmt.Sprintf("Enrollment SSO document answered HTTP %d; the device needs 200 and cancels the enrollment", resp.StatusCode),
				Err:    &HTTPError{Step: StepESSO, Status: resp.StatusCode, Body: body}}
		}
		doc, err := ParseESSODocument(resp.Header.Get("Content-Type"), body, developer)
		if err != nil {
			return nil, err
		}
		doc.URL = u.String()
		d.log(StepESSO, "document: iTunesStoreID %d, %d AppIDs, profile payloads %v, %d declarations",
			doc.ITunesStoreID, len(doc.AppIDs), doc.ProfilePayloadTypes, len(doc.Declarations))
		return doc, nil
	}
}

// ParseESSODocument checks a 200 Enrollment SSO document answer the way a
// device does. developer says the document was named by
// X-Apple-MDM-ESSO-Developer. It requires media type application/json and
// one JSON object (no duplicate keys) with only the documented keys:
// iTunesStoreID, a positive JSON integer (required unless developer);
// AppIDs, TEAMID.bundle.id strings (required with, forbidden without,
// developer); AssociatedDomains, strings; AssociatedDomainsEnableDirectDownloads,
// a boolean; ConfigurationProfile, base64 of a Configuration profile (XML or
// CMS-signed XML) whose payloads are com.apple.extensiblesso (at least one)
// or certificate payloads; Declarations, base64 strings of declarations
// (one com.apple.activation.simple referencing every configuration, the
// SSO app's com.apple.configuration.app.managed, assets, legacy profiles).
// At least one of ConfigurationProfile and Declarations must be present.
func ParseESSODocument(contentType string, body []byte, developer bool) (*ESSODocument, error) {
	header := ESSOHeader
	if developer {
		header = ESSODeveloperHeader
	}
	if mt := mediaType(contentType); mt != "application/json" {
		return nil, deviation(StepESSO, "Enrollment SSO document Content-Type %q, want application/json", contentType)
	}
	obj, err := parseStrictObject(body)
	if err != nil {
		return nil, &ProtocolError{Step: StepESSO, Reason: "Enrollment SSO document is not a JSON object", Err: err}
	}
	for _, k := range obj.Keys {
		if !essoKeys[k] {
			return nil, deviation(StepESSO, "unexpected key %q in the Enrollment SSO document", k)
		}
	}
	doc := &ESSODocument{Developer: developer}
	if raw, ok := obj.Values["iTunesStoreID"]; ok {
		n, err := jsonInteger(raw)
		if err != nil {
			return nil, deviation(StepESSO, "iTunesStoreID %s is not a JSON integer", clip(string(raw), 30))
		}
		if n <= 0 {
			return nil, deviation(StepESSO, "iTunesStoreID %d is not an App Store id", n)
		}
		doc.ITunesStoreID = n
	} else if !developer {
		return nil, deviation(StepESSO, "no iTunesStoreID: a document named by %s must give the App Store id of the SSO app", header)
	}
	raw, ok := obj.Values["AppIDs"]
	switch {
	case ok && !developer:
		return nil, deviation(StepESSO, "AppIDs in a document named by %s: only %s documents (test mode) may carry it", header, ESSODeveloperHeader)
	case !ok && developer:
		return nil, deviation(StepESSO, "no AppIDs: a document named by %s needs at least one", header)
	case ok:
		if doc.AppIDs, err = jsonStrings(raw); err != nil || len(doc.AppIDs) == 0 {
			return nil, deviation(StepESSO, "AppIDs must be a non-empty array of strings")
		}
		for _, id := range doc.AppIDs {
			if !appIDPattern.MatchString(id) {
				return nil, deviation(StepESSO, "AppID %q is not TEAMID.bundle.id", id)
			}
		}
	}
	if raw, ok := obj.Values["AssociatedDomains"]; ok {
		if doc.AssociatedDomains, err = jsonStrings(raw); err != nil {
			return nil, deviation(StepESSO, "AssociatedDomains must be an array of strings")
		}
		for _, dom := range doc.AssociatedDomains {
			if dom == "" || strings.Contains(dom, "://") || strings.ContainsAny(dom, "/ ") {
				return nil, deviation(StepESSO, "associated domain %q is not service:host", dom)
			}
		}
	}
	if raw, ok := obj.Values["AssociatedDomainsEnableDirectDownloads"]; ok {
		switch string(raw) {
		case "true":
			doc.AssociatedDomainsEnableDirectDownloads = true
		case "false":
		default:
			return nil, deviation(StepESSO, "AssociatedDomainsEnableDirectDownloads %s is not a JSON boolean", clip(string(raw), 30))
		}
	}
	rawProfile, hasProfile := obj.Values["ConfigurationProfile"]
	rawDecls, hasDecls := obj.Values["Declarations"]
	if !hasProfile && !hasDecls {
		return nil, deviation(StepESSO, "the Enrollment SSO document has neither ConfigurationProfile nor Declarations; at least one is required")
	}
	if hasProfile {
		if err := doc.readProfile(rawProfile); err != nil {
			return nil, err
		}
	}
	if hasDecls {
		if err := doc.readDeclarations(rawDecls); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// readProfile decodes and checks ConfigurationProfile.
func (doc *ESSODocument) readProfile(raw json.RawMessage) error {
	data, err := jsonBase64(raw)
	if err != nil {
		return deviation(StepESSO, "ConfigurationProfile is not a base64 string: %v", err)
	}
	content, signed, err := profileContent(StepESSO, "ConfigurationProfile", data)
	if err != nil {
		return err
	}
	var top map[string]any
	if err := plist.NewXMLDecoder(bytes.NewReader(content)).Decode(&top); err != nil {
		return &ProtocolError{Step: StepESSO, Reason: "ConfigurationProfile is not a valid XML property list dictionary", Err: err}
	}
	if err := checkPayloadHeader(StepESSO, top, "ConfigurationProfile"); err != nil {
		return err
	}
	if t := top["PayloadType"]; t != "Configuration" {
		return deviation(StepESSO, "ConfigurationProfile top-level PayloadType %v, want Configuration", t)
	}
	items, ok := top["PayloadContent"].([]any)
	if !ok || len(items) == 0 {
		return deviation(StepESSO, "ConfigurationProfile has no PayloadContent array")
	}
	sso := 0
	for i, it := range items {
		where := fmt.Sprintf("ConfigurationProfile PayloadContent[%d]", i)
		p, ok := it.(map[string]any)
		if !ok {
			return deviation(StepESSO, "%s is not a dictionary", where)
		}
		if err := checkPayloadHeader(StepESSO, p, where); err != nil {
			return err
		}
		typ := p["PayloadType"].(string)
		if !essoProfilePayloads[typ] {
			return deviation(StepESSO, "%s has PayloadType %s: the Enrollment SSO profile may hold only com.apple.extensiblesso and certificate payloads", where, typ)
		}
		if typ == "com.apple.extensiblesso" {
			if s, ok := p["ExtensionIdentifier"].(string); !ok || s == "" {
				return deviation(StepESSO, "%s (com.apple.extensiblesso) has no ExtensionIdentifier", where)
			}
			if t := p["Type"]; t != "Redirect" && t != "Credential" {
				return deviation(StepESSO, "%s (com.apple.extensiblesso) Type %v, want Redirect or Credential", where, t)
			}
			sso++
		}
		doc.ProfilePayloadTypes = append(doc.ProfilePayloadTypes, typ)
	}
	if sso == 0 {
		return deviation(StepESSO, "ConfigurationProfile has no com.apple.extensiblesso payload")
	}
	doc.ConfigurationProfile, doc.ProfileSigned = content, signed
	return nil
}

// Declaration types an Enrollment SSO document may carry.
const (
	declActivationSimple = "com.apple.activation.simple"
	declAppManaged       = "com.apple.configuration.app.managed"
	declLegacy           = "com.apple.configuration.legacy"
	declAssetPrefix      = "com.apple.asset."
)

// readDeclarations decodes and checks Declarations.
func (doc *ESSODocument) readDeclarations(raw json.RawMessage) error {
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return deviation(StepESSO, "Declarations is not an array")
	}
	if len(items) == 0 {
		return deviation(StepESSO, "Declarations is empty")
	}
	var activation *jsonObject
	var apps []*jsonObject
	configs := map[string]bool{}
	ids := map[string]bool{}
	for i, it := range items {
		data, err := jsonBase64(it)
		if err != nil {
			return deviation(StepESSO, "Declarations[%d] is not a base64 string: %v", i, err)
		}
		decl, err := parseStrictObject(data)
		if err != nil {
			return &ProtocolError{Step: StepESSO, Reason: fmt.Sprintf("Declarations[%d] is not a JSON object", i), Err: err}
		}
		for _, k := range decl.Keys {
			if k != "Type" && k != "Identifier" && k != "ServerToken" && k != "Payload" {
				return deviation(StepESSO, "Declarations[%d] has unexpected key %q", i, k)
			}
		}
		typ, _, err1 := decl.stringField("Type")
		id, _, err2 := decl.stringField("Identifier")
		if err1 != nil || err2 != nil || typ == "" || id == "" {
			return deviation(StepESSO, "Declarations[%d] needs string Type and Identifier", i)
		}
		if _, _, err := decl.stringField("ServerToken"); err != nil {
			return deviation(StepESSO, "declaration %q: ServerToken is not a string", id)
		}
		if ids[id] {
			return deviation(StepESSO, "declaration Identifier %q appears twice", id)
		}
		ids[id] = true
		rawPayload, ok := decl.Values["Payload"]
		if !ok {
			return deviation(StepESSO, "declaration %q has no Payload", id)
		}
		payload, err := parseStrictObject(rawPayload)
		if err != nil {
			return &ProtocolError{Step: StepESSO, Reason: fmt.Sprintf("declaration %q Payload is not a JSON object", id), Err: err}
		}
		switch {
		case typ == declActivationSimple:
			if activation != nil {
				return deviation(StepESSO, "more than one %s declaration", declActivationSimple)
			}
			activation = payload
		case typ == declAppManaged:
			apps = append(apps, payload)
			configs[id] = true
		case typ == declLegacy:
			configs[id] = true
		case strings.HasPrefix(typ, declAssetPrefix):
		default:
			return deviation(StepESSO, "declaration %q has Type %s: only %s, %s, %s and assets are allowed", id, typ, declActivationSimple, declAppManaged, declLegacy)
		}
		doc.Declarations = append(doc.Declarations, ESSODeclaration{Type: typ, Identifier: id, Raw: data})
	}
	if activation == nil {
		return deviation(StepESSO, "Declarations have no %s", declActivationSimple)
	}
	refs, err := jsonStrings(activation.Values["StandardConfigurations"])
	if err != nil {
		return deviation(StepESSO, "%s needs StandardConfigurations, an array of strings", declActivationSimple)
	}
	referenced := map[string]bool{}
	for _, r := range refs {
		if !configs[r] {
			return deviation(StepESSO, "%s references %q, which is not a configuration in Declarations", declActivationSimple, r)
		}
		referenced[r] = true
	}
	for _, c := range sortedKeys(configs) {
		if !referenced[c] {
			return deviation(StepESSO, "%s does not reference configuration %q", declActivationSimple, c)
		}
	}
	if doc.Developer {
		return doc.checkDeveloperApps(apps)
	}
	if len(apps) != 1 {
		return deviation(StepESSO, "Declarations need exactly one %s, found %d", declAppManaged, len(apps))
	}
	raw, ok := apps[0].Values["AppStoreID"]
	id, err := appStoreID(raw)
	if !ok || err != nil {
		return deviation(StepESSO, "%s needs an AppStoreID (number or numeric string)", declAppManaged)
	}
	if id != doc.ITunesStoreID {
		return deviation(StepESSO, "%s AppStoreID %d differs from iTunesStoreID %d", declAppManaged, id, doc.ITunesStoreID)
	}
	return nil
}

// checkDeveloperApps requires one app configuration per AppID, matched by
// BundleID.
func (doc *ESSODocument) checkDeveloperApps(apps []*jsonObject) error {
	want := map[string]bool{}
	for _, id := range doc.AppIDs {
		_, b, _ := strings.Cut(id, ".")
		want[b] = true
	}
	got := map[string]bool{}
	for _, a := range apps {
		b, ok, err := a.stringField("BundleID")
		if err != nil || !ok || !want[b] {
			return deviation(StepESSO, "developer %s needs a BundleID of one of the AppIDs (got %q)", declAppManaged, b)
		}
		got[b] = true
	}
	for _, b := range sortedKeys(want) {
		if !got[b] {
			return deviation(StepESSO, "no %s with BundleID %q for its AppID", declAppManaged, b)
		}
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

// jsonInteger decodes a JSON number without fraction or exponent.
func jsonInteger(raw json.RawMessage) (int64, error) {
	if !jsonIntegerRegex.Match(raw) {
		return 0, fmt.Errorf("not a JSON integer")
	}
	return strconv.ParseInt(string(raw), 10, 64)
}

// appStoreID decodes a JSON integer or a string of decimal digits.
func appStoreID(raw json.RawMessage) (int64, error) {
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return 0, fmt.Errorf("not a numeric string")
		}
		return strconv.ParseInt(s, 10, 64)
	}
	return jsonInteger(raw)
}

// jsonStrings decodes a JSON array of strings (null and non-string
// elements are errors).
func jsonStrings(raw json.RawMessage) ([]string, error) {
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, fmt.Errorf("not a JSON array")
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if len(it) == 0 || it[0] != '"' || json.Unmarshal(it, &s) != nil {
			return nil, fmt.Errorf("array element %s is not a string", clip(string(it), 20))
		}
		out = append(out, s)
	}
	return out, nil
}

// jsonBase64 decodes a JSON string holding standard base64.
func jsonBase64(raw json.RawMessage) ([]byte, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("not a JSON string")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("empty")
	}
	return b, nil
}
