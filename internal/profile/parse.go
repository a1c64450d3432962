package profile

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/micromdm/plist"
)

// MaxTemplateSize is the largest template ParseTemplate accepts, in bytes.
const MaxTemplateSize = 1 << 20

// ParseTemplate validates an enrollment profile template and prepares it for Render.
//
// The template must be an XML plist (binary plists and signed profiles are refused) of at most
// MaxTemplateSize bytes: a dictionary with PayloadType "Configuration", a PayloadUUID and a
// PayloadIdentifier, and a PayloadContent array of dictionaries, each with a PayloadType, a
// PayloadUUID (in UUID form, unique within the template) and a PayloadIdentifier. Exactly one
// payload must be of type com.apple.mdm, with an https ServerURL, a non-empty Topic, an optional
// https CheckInURL, and an IdentityCertificateUUID naming the PayloadUUID of another payload.
//
// Errors are of type *TemplateError.
func ParseTemplate(data []byte) (*Template, error) {
	root, err := decode(data)
	if err != nil {
		return nil, err
	}
	t := &Template{root: root, uuidSlot: make(map[string]int), mdmIndex: -1}
	if err := t.validateProfile(); err != nil {
		return nil, err
	}
	return t, nil
}

func problem(format string, args ...any) error {
	return &TemplateError{Problem: fmt.Sprintf(format, args...)}
}

// decode parses data as an XML plist whose top level is a dictionary.
func decode(data []byte) (map[string]any, error) {
	if len(data) > MaxTemplateSize {
		return nil, problem("file is %d bytes, larger than the %d byte limit", len(data), MaxTemplateSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil, problem("file is empty")
	case bytes.HasPrefix(trimmed, []byte("bplist")):
		return nil, problem("binary plists are not supported; convert it to XML (plutil -convert xml1)")
	case trimmed[0] == 0x30:
		return nil, problem("file looks like a signed (CMS) profile; provide the unsigned XML profile")
	case trimmed[0] != '<':
		return nil, problem("not an XML plist")
	}
	var v any
	dec := plist.NewXMLDecoder(io.LimitReader(bytes.NewReader(data), MaxTemplateSize))
	if err := dec.Decode(&v); err != nil {
		return nil, problem("not a valid XML plist: %v", err)
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, problem("top level of the plist is %s, not a dict", kindName(v))
	}
	return root, nil
}

// validateProfile checks the whole profile and fills in t's derived fields.
func (t *Template) validateProfile() error {
	typ, err := requiredString(t.root, keyPayloadType, "profile")
	if err != nil {
		return err
	}
	if typ != typeConfiguration {
		return problem("profile PayloadType is %q, want %q", typ, typeConfiguration)
	}
	if _, err := requiredString(t.root, keyPayloadIdentifier, "profile"); err != nil {
		return err
	}
	if err := t.addUUID(t.root, "profile", 0); err != nil {
		return err
	}

	rawContent, ok := t.root[keyPayloadContent]
	if !ok {
		return problem("profile has no PayloadContent")
	}
	content, ok := rawContent.([]any)
	if !ok {
		return problem("profile PayloadContent is %s, not an array", kindName(rawContent))
	}
	t.nSlots = len(content) + 1

	payloads := make([]map[string]any, len(content))
	for i, raw := range content {
		p, ok := raw.(map[string]any)
		if !ok {
			return problem("PayloadContent item %d is %s, not a dict", i, kindName(raw))
		}
		payloads[i] = p
		where := fmt.Sprintf("PayloadContent item %d", i)
		if _, err := requiredString(p, keyPayloadIdentifier, where); err != nil {
			return err
		}
		where = describe(p, i)
		ptyp, err := requiredString(p, keyPayloadType, where)
		if err != nil {
			return err
		}
		if err := t.addUUID(p, where, i+1); err != nil {
			return err
		}
		switch ptyp {
		case typeMDM:
			if t.mdmIndex >= 0 {
				return problem("more than one %s payload (%s and %s); exactly one is allowed",
					typeMDM, describe(payloads[t.mdmIndex], t.mdmIndex), where)
			}
			t.mdmIndex = i
		case typeSCEP:
			if c, ok := p[keyPayloadContent].(map[string]any); ok {
				if s, ok := c[keyChallenge].(string); ok && s != "" {
					t.scepChallenge = true
				}
			}
		}
	}
	if t.mdmIndex < 0 {
		return problem("no %s payload in PayloadContent", typeMDM)
	}
	return t.validateMDM(payloads[t.mdmIndex], describe(payloads[t.mdmIndex], t.mdmIndex))
}

// validateMDM checks the com.apple.mdm payload.
func (t *Template) validateMDM(p map[string]any, where string) error {
	var err error
	if t.serverURL, err = requiredString(p, keyServerURL, where); err != nil {
		return err
	}
	if err := checkHTTPS(t.serverURL, keyServerURL, where); err != nil {
		return err
	}
	if raw, ok := p[keyCheckInURL]; ok {
		s, ok := raw.(string)
		if !ok {
			return problem("%s: %s is %s, not a string", where, keyCheckInURL, kindName(raw))
		}
		if err := checkHTTPS(s, keyCheckInURL, where); err != nil {
			return err
		}
		t.checkInURL = s
	}
	if t.topic, err = requiredString(p, keyTopic, where); err != nil {
		return err
	}
	ident, err := requiredString(p, keyIdentityCertificateUUID, where)
	if err != nil {
		return err
	}
	slot, ok := t.uuidSlot[strings.ToUpper(ident)]
	if !ok || slot == 0 || slot == t.mdmIndex+1 {
		return problem("%s: %s %q does not name the PayloadUUID of another payload in the profile",
			where, keyIdentityCertificateUUID, ident)
	}
	return nil
}

// addUUID validates the PayloadUUID of d and records it at slot.
func (t *Template) addUUID(d map[string]any, where string, slot int) error {
	u, err := requiredString(d, keyPayloadUUID, where)
	if err != nil {
		return err
	}
	if !isUUID(u) {
		return problem("%s: PayloadUUID %q is not a UUID (like %s)", where, u,
			"F9760DD4-F2D1-4F29-8D2C-48D52DD0A9B3")
	}
	key := strings.ToUpper(u)
	if _, dup := t.uuidSlot[key]; dup {
		return problem("%s: PayloadUUID %s is used more than once", where, u)
	}
	t.uuidSlot[key] = slot
	return nil
}

func checkHTTPS(raw, key, where string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return problem("%s: %s %q is not an https URL", where, key, raw)
	}
	return nil
}

// requiredString returns the non-empty string value of key in d.
func requiredString(d map[string]any, key, where string) (string, error) {
	raw, ok := d[key]
	if !ok {
		return "", problem("%s has no %s", where, key)
	}
	s, ok := raw.(string)
	if !ok {
		return "", problem("%s: %s is %s, not a string", where, key, kindName(raw))
	}
	if strings.TrimSpace(s) == "" {
		return "", problem("%s: %s is empty", where, key)
	}
	return s, nil
}

// describe names payload i for error messages, by its identifier when it has one.
func describe(p map[string]any, i int) string {
	if id, ok := p[keyPayloadIdentifier].(string); ok && id != "" {
		return fmt.Sprintf("payload %d (%s)", i, id)
	}
	return fmt.Sprintf("PayloadContent item %d", i)
}

// kindName names the plist type of a decoded value.
func kindName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a dict"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, uint64:
		return "an integer"
	case float32, float64:
		return "a real"
	case []byte:
		return "data"
	case time.Time:
		return "a date"
	default:
		return "an unknown value"
	}
}
