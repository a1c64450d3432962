package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"
)

const (
	tplProfileUUID = "F9760DD4-F2D1-4F29-8D2C-48D52DD0A9B3"
	tplSCEPUUID    = "CB90E976-AD44-4B69-8108-8095E6260978"
	tplCAUUID      = "0E1D2C3B-4A59-4687-9584-A3B2C1D0E9F8"
	tplWifiUUID    = "5D3E1A4B-7C2F-4E8D-9A6B-1F0E2D3C4B5A"
	tplMDMUUID     = "96B11019-B54C-49DC-9480-43525834DE7B"

	// indexes in the fixture's PayloadContent
	idxSCEP, idxCA, idxWifi, idxMDM = 0, 1, 2, 3
)

func seeded(seed byte) io.Reader {
	return rand.NewChaCha8([32]byte{seed})
}

func decodeProfile(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var v any
	if err := plist.NewXMLDecoder(io.LimitReader(bytes.NewReader(data), MaxTemplateSize)).Decode(&v); err != nil {
		t.Fatalf("decoding rendered profile: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("rendered profile top level is %T", v)
	}
	return m
}

func payloads(t testing.TB, profile map[string]any) []map[string]any {
	t.Helper()
	content, ok := profile["PayloadContent"].([]any)
	if !ok {
		t.Fatalf("PayloadContent is %T", profile["PayloadContent"])
	}
	out := make([]map[string]any, len(content))
	for i, c := range content {
		if out[i], ok = c.(map[string]any); !ok {
			t.Fatalf("PayloadContent[%d] is %T", i, c)
		}
	}
	return out
}

// payloadUUIDs returns the profile's PayloadUUID followed by each payload's.
func payloadUUIDs(t testing.TB, profile map[string]any) []string {
	t.Helper()
	uuids := []string{profile["PayloadUUID"].(string)}
	for _, p := range payloads(t, profile) {
		uuids = append(uuids, p["PayloadUUID"].(string))
	}
	return uuids
}

// replaceStrings returns a deep copy of v with every string equal (ignoring case) to a key of m
// replaced by its value.
func replaceStrings(v any, m map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = replaceStrings(e, m)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = replaceStrings(e, m)
		}
		return out
	case string:
		for old, new := range m {
			if strings.EqualFold(x, old) {
				return new
			}
		}
	}
	return v
}

func TestRender(t *testing.T) {
	tplData := readFixture(t, "enroll.mobileconfig")
	tpl := mustParse(t, tplData)
	tplTree := decodeProfile(t, tplData)
	oldUUIDs := []string{tplProfileUUID, tplSCEPUUID, tplCAUUID, tplWifiUUID, tplMDMUUID}

	tests := []struct {
		mode, enrollmentMode string
		accessRights         bool
	}{
		{ModeBYOD, "BYOD", false},
		{ModeADDE, "ADDE", true},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			const appleID = "alice&bob@example.org"
			out, err := tpl.Render(Params{Mode: tc.mode, ManagedAppleID: appleID, Rand: seeded(1)})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !bytes.HasPrefix(out, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
				t.Errorf("output does not start with an XML declaration: %.60q", out)
			}
			got := decodeProfile(t, out)
			ps := payloads(t, got)
			if len(ps) != 4 {
				t.Fatalf("rendered profile has %d payloads, want 4", len(ps))
			}
			mdm := ps[idxMDM]

			if v := mdm["EnrollmentMode"]; v != tc.enrollmentMode {
				t.Errorf("EnrollmentMode = %#v, want %q", v, tc.enrollmentMode)
			}
			if v := mdm["AssignedManagedAppleID"]; v != appleID {
				t.Errorf("AssignedManagedAppleID = %#v, want %q", v, appleID)
			}
			if v, ok := mdm["ManagedAppleID"]; ok {
				t.Errorf("ManagedAppleID present (%#v), want it removed", v)
			}
			ar, ok := mdm["AccessRights"]
			if ok != tc.accessRights {
				t.Errorf("AccessRights present = %v, want %v", ok, tc.accessRights)
			}
			if tc.accessRights && ar != uint64(8191) {
				t.Errorf("AccessRights = %#v, want 8191", ar)
			}

			// Fresh, upper-case, unique UUIDs.
			newUUIDs := payloadUUIDs(t, got)
			seen := map[string]bool{}
			for i, u := range newUUIDs {
				if !isUUID(u) || u != strings.ToUpper(u) {
					t.Errorf("UUID %d = %q, want an upper-case UUID", i, u)
				}
				if strings.EqualFold(u, oldUUIDs[i]) {
					t.Errorf("UUID %d unchanged: %q", i, u)
				}
				if seen[u] {
					t.Errorf("UUID %q used twice", u)
				}
				seen[u] = true
			}

			// References follow the renamed payloads, whatever their case in the template.
			newSCEP, newCA := ps[idxSCEP]["PayloadUUID"], ps[idxCA]["PayloadUUID"]
			if v := mdm["IdentityCertificateUUID"]; v != newSCEP {
				t.Errorf("IdentityCertificateUUID = %v, want the SCEP payload's new UUID %v", v, newSCEP)
			}
			if v := ps[idxWifi]["PayloadCertificateUUID"]; v != newSCEP {
				t.Errorf("PayloadCertificateUUID = %v, want %v", v, newSCEP)
			}
			anchors := ps[idxWifi]["EAPClientConfiguration"].(map[string]any)["PayloadCertificateAnchorUUID"]
			if !reflect.DeepEqual(anchors, []any{newCA}) {
				t.Errorf("PayloadCertificateAnchorUUID = %v, want [%v]", anchors, newCA)
			}

			// Identifiers are stable.
			if v := got["PayloadIdentifier"]; v != "com.github.micromdm.nanomdm" {
				t.Errorf("profile PayloadIdentifier = %v", v)
			}
			for i, p := range payloads(t, tplTree) {
				if ps[i]["PayloadIdentifier"] != p["PayloadIdentifier"] {
					t.Errorf("payload %d PayloadIdentifier = %v, want %v", i, ps[i]["PayloadIdentifier"], p["PayloadIdentifier"])
				}
			}

			// Spot checks of values of every plist type.
			scep := ps[idxSCEP]["PayloadContent"].(map[string]any)
			if scep["Challenge"] != "SCEP-CHALLENGE-HERE" || scep["Keysize"] != uint64(2048) {
				t.Errorf("SCEP content changed: %v", scep)
			}
			if v := ps[idxCA]["PayloadContent"]; !bytes.HasPrefix(v.([]byte), []byte{0x30, 0x82, 0x01, 0xb3}) {
				t.Errorf("CA data = %x", v)
			}
			if v := got["RemovalDate"]; !v.(time.Time).Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Errorf("RemovalDate = %v", v)
			}
			if got["DurationUntilRemoval"] != 86400.5 || got["TargetDeviceType"] != int64(-1) ||
				got["PayloadRemovalDisallowed"] != false || got["PayloadDescription"] != "Enrolls this device with Example & Co." {
				t.Errorf("top-level keys changed: %v", got)
			}
			if mdm["SignMessage"] != true || mdm["CheckOutWhenRemoved"] != true ||
				mdm["CheckInURL"] != "https://mdm.example.org/mdm/checkin" || mdm["Topic"] != tpl.Topic() ||
				!reflect.DeepEqual(mdm["ServerCapabilities"], []any{
					"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken", "com.apple.mdm.token"}) {
				t.Errorf("mdm payload keys changed: %v", mdm)
			}

			// Everything else is exactly the template.
			rename := map[string]string{}
			for i, old := range oldUUIDs {
				rename[old] = newUUIDs[i]
			}
			want := replaceStrings(tplTree, rename).(map[string]any)
			wantMDM := payloads(t, want)[idxMDM]
			wantMDM["EnrollmentMode"] = tc.enrollmentMode
			wantMDM["AssignedManagedAppleID"] = appleID
			delete(wantMDM, "ManagedAppleID")
			if !tc.accessRights {
				delete(wantMDM, "AccessRights")
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rendered profile differs from the template beyond the expected edits\ngot:  %v\nwant: %v", got, want)
			}

			// The output is itself a valid template for the same server.
			again := mustParse(t, out)
			if again.ServerURL() != tpl.ServerURL() || again.Topic() != tpl.Topic() {
				t.Errorf("re-parsed output has ServerURL %q Topic %q", again.ServerURL(), again.Topic())
			}
		})
	}
}

func TestRenderFreshUUIDsEachTime(t *testing.T) {
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	seen := map[string]int{}
	for i := range 2 {
		out, err := tpl.Render(Params{Mode: ModeBYOD, ManagedAppleID: "alice@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		got := decodeProfile(t, out)
		for _, u := range payloadUUIDs(t, got) {
			if j, ok := seen[u]; ok {
				t.Errorf("UUID %s of render %d already used in render %d", u, i, j)
			}
			seen[u] = i
		}
		if v, want := payloads(t, got)[idxMDM]["IdentityCertificateUUID"], payloads(t, got)[idxSCEP]["PayloadUUID"]; v != want {
			t.Errorf("render %d: IdentityCertificateUUID = %v, want %v", i, v, want)
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct UUIDs over two renders, want 10", len(seen))
	}
}

func TestRenderDeterministic(t *testing.T) {
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	render := func(seed byte) []byte {
		t.Helper()
		out, err := tpl.Render(Params{Mode: ModeADDE, ManagedAppleID: "alice@example.org", Rand: seeded(seed)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := render(7), render(7), render(8)
	if !bytes.Equal(a, b) {
		t.Errorf("two renders with the same random stream differ:\n%s\n---\n%s", a, b)
	}
	if bytes.Equal(a, c) {
		t.Error("renders with different random streams are identical")
	}
}

func TestRenderDoesNotModifyTemplate(t *testing.T) {
	data := readFixture(t, "enroll.mobileconfig")
	tpl := mustParse(t, data)
	before := decodeProfile(t, data)
	for _, mode := range []string{ModeBYOD, ModeADDE} {
		if _, err := tpl.Render(Params{Mode: mode, ManagedAppleID: "alice@example.org", Rand: seeded(1)}); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(tpl.root, before) {
		t.Error("Render modified the template tree")
	}
	out, err := tpl.Render(Params{Mode: ModeADDE, ManagedAppleID: "bob@example.org", Rand: seeded(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := payloads(t, decodeProfile(t, out))[idxMDM]["AccessRights"]; !ok {
		t.Error("AccessRights missing from an ADDE render that followed a BYOD render")
	}
}

func TestRenderErrors(t *testing.T) {
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	tests := []struct {
		name string
		p    Params
		want error
	}{
		{"empty mode", Params{ManagedAppleID: "a@example.org"}, ErrUnknownMode},
		{"upper-case mode", Params{Mode: "BYOD", ManagedAppleID: "a@example.org"}, ErrUnknownMode},
		{"discovery version as mode", Params{Mode: "mdm-byod", ManagedAppleID: "a@example.org"}, ErrUnknownMode},
		{"no managed Apple ID", Params{Mode: ModeBYOD}, ErrNoManagedAppleID},
		{"blank managed Apple ID", Params{Mode: ModeADDE, ManagedAppleID: " \t"}, ErrNoManagedAppleID},
		{"negative RequiredAppID", Params{Mode: ModeADDE, ManagedAppleID: "a@example.org", RequiredAppID: -1},
			ErrRequiredAppID},
		{"random source exhausted", Params{Mode: ModeBYOD, ManagedAppleID: "a@example.org",
			Rand: bytes.NewReader(make([]byte, 40))}, ErrRandom},
		{"random source repeats", Params{Mode: ModeBYOD, ManagedAppleID: "a@example.org",
			Rand: bytes.NewReader(make([]byte, 1000))}, ErrRandom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tpl.Render(tc.p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Render error = %v, want %v", err, tc.want)
			}
			if out != nil {
				t.Errorf("Render returned %d bytes with an error", len(out))
			}
		})
	}
}

func TestRenderRequiredAppID(t *testing.T) {
	good := string(readFixture(t, "enroll.mobileconfig"))
	withAppID := replaceOnce(t, good, "\t\t\t<key>ServerURL</key>\n",
		"\t\t\t<key>RequiredAppIDForMDM</key>\n\t\t\t<integer>42</integer>\n\t\t\t<key>ServerURL</key>\n")
	tests := []struct {
		name     string
		template string
		appID    int64
		want     any // decoded RequiredAppIDForMDM; nil = absent
	}{
		{"absent when 0", good, 0, nil},
		{"set", good, 1234567890, uint64(1234567890)},
		{"largest int64", good, 1<<63 - 1, uint64(1<<63 - 1)},
		{"template value kept when 0", withAppID, 0, uint64(42)},
		{"template value replaced", withAppID, 361309726, uint64(361309726)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl := mustParse(t, []byte(tc.template))
			for _, mode := range []string{ModeBYOD, ModeADDE} {
				out, err := tpl.Render(Params{Mode: mode, ManagedAppleID: "a@example.org", RequiredAppID: tc.appID, Rand: seeded(3)})
				if err != nil {
					t.Fatalf("Render %s: %v", mode, err)
				}
				ps := payloads(t, decodeProfile(t, out))
				got, ok := ps[idxMDM]["RequiredAppIDForMDM"]
				if tc.want == nil {
					if ok {
						t.Errorf("%s: RequiredAppIDForMDM = %#v, want it absent", mode, got)
					}
					if bytes.Contains(out, []byte("RequiredAppIDForMDM")) {
						t.Errorf("%s: output mentions RequiredAppIDForMDM", mode)
					}
					continue
				}
				if got != tc.want {
					t.Errorf("%s: RequiredAppIDForMDM = %#v, want %#v", mode, got, tc.want)
				}
				wantXML := fmt.Sprintf("<key>RequiredAppIDForMDM</key>\n\t\t\t<integer>%d</integer>", tc.want)
				if !bytes.Contains(out, []byte(wantXML)) {
					t.Errorf("%s: output lacks %q", mode, wantXML)
				}
				if n := bytes.Count(out, []byte("RequiredAppIDForMDM")); n != 1 {
					t.Errorf("%s: RequiredAppIDForMDM appears %d times", mode, n)
				}
				for i, p := range ps {
					if _, ok := p["RequiredAppIDForMDM"]; ok && i != idxMDM {
						t.Errorf("%s: RequiredAppIDForMDM set in payload %d", mode, i)
					}
				}
			}
		})
	}
}

func TestRenderConcurrent(t *testing.T) {
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	const workers, perWorker = 8, 25
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode, wantMode := ModeBYOD, "BYOD"
			if w%2 == 1 {
				mode, wantMode = ModeADDE, "ADDE"
			}
			id := fmt.Sprintf("user%d@example.org", w)
			for i := range perWorker {
				out, err := tpl.Render(Params{Mode: mode, ManagedAppleID: id})
				if err != nil {
					errs <- err
					return
				}
				uuids, mdm, err := inspect(out)
				if err != nil {
					errs <- fmt.Errorf("worker %d render %d: %v", w, i, err)
					return
				}
				_, hasAR := mdm["AccessRights"]
				if mdm["EnrollmentMode"] != wantMode || mdm["AssignedManagedAppleID"] != id || hasAR != (mode == ModeADDE) {
					errs <- fmt.Errorf("worker %d render %d: mdm payload has values of another render: %v", w, i, mdm)
					return
				}
				mu.Lock()
				for _, u := range uuids {
					if seen[u] {
						errs <- fmt.Errorf("UUID %s reused across concurrent renders", u)
					}
					seen[u] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if want := workers * perWorker * 5; len(seen) != want {
		t.Errorf("%d distinct UUIDs, want %d", len(seen), want)
	}
}

// inspect decodes a rendered profile without a testing.TB (for use off the test goroutine) and
// returns its PayloadUUIDs and its com.apple.mdm payload.
func inspect(data []byte) ([]string, map[string]any, error) {
	var v any
	if err := plist.NewXMLDecoder(bytes.NewReader(data)).Decode(&v); err != nil {
		return nil, nil, err
	}
	root, _ := v.(map[string]any)
	content, _ := root["PayloadContent"].([]any)
	if len(content) != 4 {
		return nil, nil, fmt.Errorf("%d payloads, want 4", len(content))
	}
	uuids := []string{fmt.Sprint(root["PayloadUUID"])}
	for _, c := range content {
		p, _ := c.(map[string]any)
		uuids = append(uuids, fmt.Sprint(p["PayloadUUID"]))
	}
	mdm, _ := content[idxMDM].(map[string]any)
	return uuids, mdm, nil
}

func BenchmarkRender(b *testing.B) {
	tpl := mustParse(b, readFixture(b, "enroll.mobileconfig"))
	p := Params{Mode: ModeBYOD, ManagedAppleID: "alice@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Render(p); err != nil {
			b.Fatal(err)
		}
	}
}
