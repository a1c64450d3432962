package apple

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/micromdm/plist"
)

const testTopic = "com.apple.mgmt.External.2b4c9a0e-6f1d-4b8e-9f3a-71c2d5e8a4b0"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPeekMessageFixtures(t *testing.T) {
	tests := []struct {
		file        string
		want        Message
		key         string
		userChannel bool
	}{
		{
			file: "ue-iphone-authenticate.plist",
			want: Message{
				MessageType:  "Authenticate",
				EnrollmentID: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
				Model:        "iPhone17,2",
				ProductName:  "iPhone17,2",
				Topic:        testTopic,
			},
			key: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
		},
		{
			file: "ue-iphone-tokenupdate.plist",
			want: Message{
				MessageType:  "TokenUpdate",
				EnrollmentID: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
				Topic:        testTopic,
			},
			key: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
		},
		{
			file: "adde-mac-authenticate.plist",
			want: Message{
				MessageType: "Authenticate",
				UDID:        "00008112-001A2B3C4D5E601E",
				Model:       "Mac14,2",
				ProductName: "Mac14,2",
				Topic:       testTopic,
			},
			key: "00008112-001A2B3C4D5E601E",
		},
		{
			file: "adde-mac-user-tokenupdate.plist",
			want: Message{
				MessageType: "TokenUpdate",
				UDID:        "00008112-001A2B3C4D5E601E",
				UserID:      "8E1F2A3B-4C5D-4E6F-8A7B-9C0D1E2F3A4B",
				Topic:       testTopic,
			},
			key:         "00008112-001A2B3C4D5E601E",
			userChannel: true,
		},
		{
			file: "byod-mac-user-tokenupdate.plist",
			want: Message{
				MessageType:      "TokenUpdate",
				EnrollmentID:     "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D",
				EnrollmentUserID: "F0E1D2C3-B4A5-4968-8776-655443322110",
				Topic:            testTopic,
			},
			key:         "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D",
			userChannel: true,
		},
		{
			file: "adde-iphone-tokenupdate.plist",
			want: Message{
				MessageType: "TokenUpdate",
				UDID:        "00008140-000C195E1A04801C",
				Topic:       testTopic,
			},
			key: "00008140-000C195E1A04801C",
		},
		{
			file: "status-idle.plist",
			want: Message{Status: "Idle", UDID: "00008112-001A2B3C4D5E601E"},
			key:  "00008112-001A2B3C4D5E601E",
		},
		{
			// The nested QueryResponses dict holds a decoy UDID that must
			// not be read: the report belongs to the EnrollmentID.
			file: "status-acknowledged.plist",
			want: Message{
				Status:       "Acknowledged",
				CommandUUID:  "0C6E2F48-9A1B-4D3C-8E5F-7A9B1C3D5E7F",
				EnrollmentID: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
			},
			key: "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B",
		},
		{
			file: "checkout.plist",
			want: Message{MessageType: "CheckOut", UDID: "00008112-001A2B3C4D5E601E", Topic: testTopic},
			key:  "00008112-001A2B3C4D5E601E",
		},
		{
			file: "entities.plist",
			want: Message{
				MessageType:  "Authenticate",
				EnrollmentID: `<id> & "q" 'a' AB ` + "\U0001F600",
				Topic:        "com.example.été",
			},
			key: `<id> & "q" 'a' AB ` + "\U0001F600",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readTestdata(t, filepath.Join("checkin", tt.file))
			got, err := PeekMessage(body)
			if err != nil {
				t.Fatalf("PeekMessage: %v", err)
			}
			if got != tt.want {
				t.Errorf("PeekMessage:\n got %+v\nwant %+v", got, tt.want)
			}
			if k := got.EnrollmentKey(); k != tt.key {
				t.Errorf("EnrollmentKey = %q, want %q", k, tt.key)
			}
			if uc := got.UserChannel(); uc != tt.userChannel {
				t.Errorf("UserChannel = %v, want %v", uc, tt.userChannel)
			}
		})
	}
}

// TestPeekMessageFixturesCovered makes sure every fixture is in the table.
func TestPeekMessageFixturesCovered(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "checkin", "*.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d check-in fixtures, want at least 10", len(files))
	}
}

// TestPeekMessageMatchesPlistDecoder compares PeekMessage with the
// micromdm/plist XML decoder on every valid fixture.
func TestPeekMessageMatchesPlistDecoder(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "checkin", "*.plist"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := PeekMessage(body)
			if err != nil {
				t.Fatalf("PeekMessage: %v", err)
			}
			ref, ok := decodeDict(body)
			if !ok {
				t.Fatal("plist decoder refused a fixture")
			}
			if diff := compareWithDict(m, ref); diff != "" {
				t.Error(diff)
			}
		})
	}
}

// decodeDict decodes body with the reference decoder, reporting whether it
// is an XML plist with a dict root.
func decodeDict(body []byte) (map[string]any, bool) {
	var m map[string]any
	if err := plist.NewXMLDecoder(bytes.NewReader(body)).Decode(&m); err != nil {
		return nil, false
	}
	return m, m != nil
}

// compareWithDict returns a description of the first difference between m
// and the string values of ref, or "".
func compareWithDict(m Message, ref map[string]any) string {
	fields := map[string]string{
		"MessageType":      m.MessageType,
		"Status":           m.Status,
		"CommandUUID":      m.CommandUUID,
		"UDID":             m.UDID,
		"EnrollmentID":     m.EnrollmentID,
		"UserID":           m.UserID,
		"EnrollmentUserID": m.EnrollmentUserID,
		"Model":            m.Model,
		"ProductName":      m.ProductName,
		"Topic":            m.Topic,
	}
	for k, got := range fields {
		v, present := ref[k]
		want, isString := v.(string)
		switch {
		case present && !isString:
			return k + ": PeekMessage accepted a non-string value"
		case got != want:
			return k + ": PeekMessage " + quote(got) + ", plist decoder " + quote(want)
		}
	}
	return ""
}

func quote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

func TestPeekMessageMalformedFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "malformed", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d malformed fixtures, want at least 15", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := PeekMessage(body)
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("PeekMessage = %+v, %v; want *MalformedError", m, err)
			}
			if m != (Message{}) {
				t.Errorf("PeekMessage returned %+v with an error", m)
			}
			if strings.Contains(me.Error(), "0000") || strings.Contains(me.Error(), "smuggled") {
				t.Errorf("error %q leaks body content", me.Error())
			}
		})
	}
}

func TestPeekMessageInline(t *testing.T) {
	const decl = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	tests := []struct {
		name string
		body string
		want Message
		bad  bool
	}{
		{name: "bare dict root", body: `<dict><key>UDID</key><string>u</string></dict>`, want: Message{UDID: "u"}},
		{name: "empty dict", body: decl + `<plist version="1.0"><dict/></plist>`},
		{name: "empty string value", body: `<plist><dict><key>UDID</key><string/><key>Status</key><string></string></dict></plist>`},
		{name: "whitespace in tags", body: "<plist\tversion = '1.0' ><dict ><key >UDID</key ><string >u</string\n></dict></plist >\n", want: Message{UDID: "u"}},
		{name: "carriage returns normalized", body: "<dict><key>Topic</key><string>a\r\nb\rc</string></dict>", want: Message{Topic: "a\nb\nc"}},
		{name: "char ref CR kept", body: "<dict><key>Topic</key><string>a&#13;b</string></dict>", want: Message{Topic: "a\rb"}},
		{name: "greater-than in text", body: "<dict><key>Topic</key><string>a>b</string></dict>", want: Message{Topic: "a>b"}},
		{name: "byte order mark", body: "\xef\xbb\xbf" + decl + `<plist><dict><key>UDID</key><string>u</string></dict></plist>`, want: Message{UDID: "u"}},
		{name: "trailing comment and PI", body: `<plist><dict><key>UDID</key><string>u</string></dict></plist><!-- end --><?pi x?>` + "\n", want: Message{UDID: "u"}},
		{name: "key of interest in nested array ignored", body: `<dict><key>A</key><array><dict><key>UDID</key><string>decoy</string></dict></array></dict>`},
		{name: "long key with references", body: `<dict><key>&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;&#x55;&#x44;&#x49;&#x44;</key><string>x</string></dict>`},
		{name: "empty", body: "", bad: true},
		{name: "whitespace only", body: " \n", bad: true},
		{name: "prolog only", body: decl, bad: true},
		{name: "empty plist", body: `<plist/>`, bad: true},
		{name: "plist holding a string", body: `<plist><string>x</string></plist>`, bad: true},
		{name: "attribute on dict", body: `<dict a="b"></dict>`, bad: true},
		{name: "namespaced element", body: `<dict><key>UDID</key><x:string>u</x:string></dict>`, bad: true},
		{name: "unterminated comment", body: `<dict><!-- </dict>`, bad: true},
		{name: "PI inside dict", body: `<dict><?x y?></dict>`, bad: true},
		{name: "text in dict", body: `<dict>junk<key>UDID</key><string>u</string></dict>`, bad: true},
		{name: "uppercase hex marker", body: `<dict><key>UDID</key><string>&#X41;</string></dict>`, bad: true},
		{name: "surrogate reference", body: `<dict><key>UDID</key><string>&#xD800;</string></dict>`, bad: true},
		{name: "NUL reference", body: `<dict><key>UDID</key><string>&#0;</string></dict>`, bad: true},
		{name: "huge reference", body: `<dict><key>UDID</key><string>&#99999999999999999999;</string></dict>`, bad: true},
		{name: "reference without semicolon", body: `<dict><key>UDID</key><string>&amp</string></dict>`, bad: true},
		{name: "bare ampersand", body: `<dict><key>UDID</key><string>a & b</string></dict>`, bad: true},
		{name: "bad reference in key", body: `<dict><key>UD&ID;</key><string>u</string></dict>`, bad: true},
		{name: "empty integer", body: `<dict><key>N</key><integer/></dict>`, bad: true},
		{name: "true with content", body: `<dict><key>B</key><true>x</true></dict>`, bad: true},
		{name: "unclosed dict", body: `<plist><dict><key>UDID</key><string>u</string></plist>`, bad: true},
		{name: "unterminated DOCTYPE", body: `<!DOCTYPE plist "x`, bad: true},
		{name: "two roots", body: `<dict/><dict/>`, bad: true},
		{name: "non-string Status", body: `<dict><key>Status</key><dict/></dict>`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PeekMessage([]byte(tt.body))
			if tt.bad {
				var me *MalformedError
				if !errors.As(err, &me) {
					t.Fatalf("PeekMessage = %+v, %v; want *MalformedError", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PeekMessage: %v", err)
			}
			if got != tt.want {
				t.Errorf("PeekMessage:\n got %+v\nwant %+v", got, tt.want)
			}
			if ref, ok := decodeDict([]byte(tt.body)); ok {
				if diff := compareWithDict(got, ref); diff != "" {
					t.Error(diff)
				}
			}
		})
	}
}

func TestPeekMessageDepthLimit(t *testing.T) {
	nest := func(n int) []byte {
		var b strings.Builder
		b.WriteString("<plist><dict><key>UDID</key><string>u</string><key>X</key>")
		for i := 1; i < n; i++ {
			b.WriteString("<array>")
		}
		for i := 1; i < n; i++ {
			b.WriteString("</array>")
		}
		b.WriteString("</dict></plist>")
		return []byte(b.String())
	}
	if m, err := PeekMessage(nest(maxPlistDepth)); err != nil || m.UDID != "u" {
		t.Errorf("depth %d: %+v, %v; want accepted", maxPlistDepth, m, err)
	}
	var me *MalformedError
	if _, err := PeekMessage(nest(maxPlistDepth + 1)); !errors.As(err, &me) {
		t.Errorf("depth %d: err = %v, want *MalformedError", maxPlistDepth+1, err)
	}
	if _, err := PeekMessage(nest(100000)); !errors.As(err, &me) {
		t.Errorf("depth 100000: err = %v, want *MalformedError", err)
	}
}

func TestPeekMessageAllocs(t *testing.T) {
	body := readTestdata(t, filepath.Join("checkin", "adde-iphone-tokenupdate.plist"))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := PeekMessage(body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("PeekMessage allocates %v times per call, want at most 2", allocs)
	}
}

func TestIsMacModel(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"Mac14,2", true},
		{"MacBookPro18,3", true},
		{"MacBookAir10,1", true},
		{"MacBook10,1", true},
		{"iMac21,1", true},
		{"iMacPro1,1", true},
		{"Macmini9,1", true},
		{"MacPro7,1", true},
		{"VirtualMac2,1", true},
		{"Xserve3,1", true},
		{"iPhone17,2", false},
		{"iPad16,3", false},
		{"RealityDevice14,1", false},
		{"AppleTV14,1", false},
		{"Watch7,1", false},
		{"iPod9,1", false},
		{"Mac", false},
		{"Mac14", false},
		{"Mac14,", false},
		{"Mac,2", false},
		{"Mac14,2x", false},
		{"Mac14,2,1", false},
		{"mac14,2", false},
		{"MacBookPro", false},
		{"MacBook Pro", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsMacModel(tt.s); got != tt.want {
			t.Errorf("IsMacModel(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestMessageHelpers(t *testing.T) {
	tests := []struct {
		m           Message
		key         string
		userChannel bool
	}{
		{Message{}, "", false},
		{Message{UDID: "u"}, "u", false},
		{Message{EnrollmentID: "e"}, "e", false},
		{Message{UDID: "u", EnrollmentID: "e"}, "e", false},
		{Message{UDID: "u", UserID: "x"}, "u", true},
		{Message{EnrollmentID: "e", EnrollmentUserID: "y"}, "e", true},
	}
	for _, tt := range tests {
		if got := tt.m.EnrollmentKey(); got != tt.key {
			t.Errorf("%+v.EnrollmentKey() = %q, want %q", tt.m, got, tt.key)
		}
		if got := tt.m.UserChannel(); got != tt.userChannel {
			t.Errorf("%+v.UserChannel() = %v, want %v", tt.m, got, tt.userChannel)
		}
	}
}
