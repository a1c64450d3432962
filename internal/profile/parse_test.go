package profile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, data []byte) *Template {
	t.Helper()
	tpl, err := ParseTemplate(data)
	if err != nil {
		t.Fatalf("ParseTemplate: %v", err)
	}
	return tpl
}

func TestParseTemplate(t *testing.T) {
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	if got, want := tpl.ServerURL(), "https://mdm.example.org/mdm"; got != want {
		t.Errorf("ServerURL() = %q, want %q", got, want)
	}
	if got, want := tpl.CheckInURL(), "https://mdm.example.org/mdm/checkin"; got != want {
		t.Errorf("CheckInURL() = %q, want %q", got, want)
	}
	if got, want := tpl.Topic(), "com.apple.mgmt.External.YOUR-PUSH-TOPIC-HERE"; got != want {
		t.Errorf("Topic() = %q, want %q", got, want)
	}
	if !tpl.HasStaticSCEPChallenge() {
		t.Error("HasStaticSCEPChallenge() = false for a SCEP payload with a Challenge")
	}
}

func TestParseTemplateVariants(t *testing.T) {
	good := string(readFixture(t, "enroll.mobileconfig"))
	tests := []struct {
		name       string
		data       string
		challenge  bool
		checkInURL string
	}{
		{
			name:       "no SCEP challenge",
			data:       replaceOnce(t, good, "\t\t\t\t<key>Challenge</key>\n\t\t\t\t<string>SCEP-CHALLENGE-HERE</string>\n", ""),
			checkInURL: "https://mdm.example.org/mdm/checkin",
		},
		{
			name:       "empty SCEP challenge",
			data:       replaceOnce(t, good, "<string>SCEP-CHALLENGE-HERE</string>", "<string></string>"),
			checkInURL: "https://mdm.example.org/mdm/checkin",
		},
		{
			name:      "no CheckInURL",
			data:      replaceOnce(t, good, "\t\t\t<key>CheckInURL</key>\n\t\t\t<string>https://mdm.example.org/mdm/checkin</string>\n", ""),
			challenge: true,
		},
		{
			name: "lower-case IdentityCertificateUUID",
			data: replaceOnce(t, good,
				"<key>IdentityCertificateUUID</key>\n\t\t\t<string>CB90E976-AD44-4B69-8108-8095E6260978</string>",
				"<key>IdentityCertificateUUID</key>\n\t\t\t<string>cb90e976-ad44-4b69-8108-8095e6260978</string>"),
			challenge:  true,
			checkInURL: "https://mdm.example.org/mdm/checkin",
		},
		{
			name:       "byte order mark",
			data:       "\xef\xbb\xbf" + good,
			challenge:  true,
			checkInURL: "https://mdm.example.org/mdm/checkin",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl := mustParse(t, []byte(tc.data))
			if got := tpl.HasStaticSCEPChallenge(); got != tc.challenge {
				t.Errorf("HasStaticSCEPChallenge() = %v, want %v", got, tc.challenge)
			}
			if got := tpl.CheckInURL(); got != tc.checkInURL {
				t.Errorf("CheckInURL() = %q, want %q", got, tc.checkInURL)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	good := string(readFixture(t, "enroll.mobileconfig"))
	const (
		scepUUID    = "CB90E976-AD44-4B69-8108-8095E6260978"
		wifiUUID    = "5D3E1A4B-7C2F-4E8D-9A6B-1F0E2D3C4B5A"
		mdmUUID     = "96B11019-B54C-49DC-9480-43525834DE7B"
		profileUUID = "F9760DD4-F2D1-4F29-8D2C-48D52DD0A9B3"
		identKey    = "<key>IdentityCertificateUUID</key>\n\t\t\t<string>"
	)
	tests := []struct {
		name string
		data []byte
		want string // substring of TemplateError.Problem
	}{
		{"no mdm payload", readFixture(t, "no-mdm.mobileconfig"), "no com.apple.mdm payload"},
		{"two mdm payloads", readFixture(t, "two-mdm.mobileconfig"), "more than one com.apple.mdm payload"},
		{"identity names nothing", readFixture(t, "identity-dangling.mobileconfig"),
			`IdentityCertificateUUID "00000000-1111-4222-8333-444444444444" does not name`},
		{"missing Topic", readFixture(t, "no-topic.mobileconfig"), "has no Topic"},
		{"not a plist", readFixture(t, "not-plist.mobileconfig"), "not an XML plist"},
		{"binary plist", readFixture(t, "binary.mobileconfig"), "binary plists are not supported"},
		{"ServerURL not https", readFixture(t, "http-serverurl.mobileconfig"),
			`ServerURL "http://mdm.example.org/mdm" is not an https URL`},
		{"empty", nil, "file is empty"},
		{"only whitespace", []byte(" \n\t"), "file is empty"},
		{"signed profile", []byte{0x30, 0x82, 0x01, 0x00, 0x06, 0x09}, "signed (CMS) profile"},
		{"too large", bytes.Repeat([]byte(" "), MaxTemplateSize+1), "larger than the 1048576 byte limit"},
		{"truncated XML", []byte(good[:len(good)/2]), "not a valid XML plist"},
		{"HTML", []byte("<html><body>hello</body></html>"), "not a valid XML plist"},
		{"top level array", []byte(`<plist version="1.0"><array/></plist>`), "top level of the plist is an array"},
		{"profile type", []byte(replaceOnce(t, good, "<string>Configuration</string>", "<string>com.apple.mdm</string>")),
			`profile PayloadType is "com.apple.mdm", want "Configuration"`},
		{"profile without PayloadUUID", []byte(replaceOnce(t, good,
			"\t<key>PayloadUUID</key>\n\t<string>"+profileUUID+"</string>\n", "")), "profile has no PayloadUUID"},
		{"profile without PayloadIdentifier", []byte(replaceOnce(t, good,
			"\t<key>PayloadIdentifier</key>\n\t<string>com.github.micromdm.nanomdm</string>\n", "")),
			"profile has no PayloadIdentifier"},
		{"no PayloadContent", []byte(`<plist version="1.0"><dict>
			<key>PayloadType</key><string>Configuration</string>
			<key>PayloadIdentifier</key><string>com.example</string>
			<key>PayloadUUID</key><string>` + profileUUID + `</string></dict></plist>`),
			"profile has no PayloadContent"},
		{"PayloadContent a dict", []byte(`<plist version="1.0"><dict>
			<key>PayloadType</key><string>Configuration</string>
			<key>PayloadIdentifier</key><string>com.example</string>
			<key>PayloadUUID</key><string>` + profileUUID + `</string>
			<key>PayloadContent</key><dict/></dict></plist>`),
			"profile PayloadContent is a dict, not an array"},
		{"payload not a dict", []byte(replaceOnce(t, good, "<key>PayloadContent</key>\n\t<array>\n",
			"<key>PayloadContent</key>\n\t<array>\n\t\t<string>oops</string>\n")),
			"PayloadContent item 0 is a string, not a dict"},
		{"payload without PayloadIdentifier", []byte(replaceOnce(t, good,
			"\t\t\t<key>PayloadIdentifier</key>\n\t\t\t<string>com.example.wifi</string>\n", "")),
			"PayloadContent item 2 has no PayloadIdentifier"},
		{"payload without PayloadType", []byte(replaceOnce(t, good,
			"\t\t\t<key>PayloadType</key>\n\t\t\t<string>com.apple.wifi.managed</string>\n", "")),
			"payload 2 (com.example.wifi) has no PayloadType"},
		{"payload without PayloadUUID", []byte(replaceOnce(t, good,
			"\t\t\t<key>PayloadUUID</key>\n\t\t\t<string>"+wifiUUID+"</string>\n", "")),
			"payload 2 (com.example.wifi) has no PayloadUUID"},
		{"PayloadUUID not a UUID", []byte(replaceOnce(t, good, wifiUUID, "wifi-1")),
			`payload 2 (com.example.wifi): PayloadUUID "wifi-1" is not a UUID`},
		{"duplicate PayloadUUID", []byte(replaceOnce(t, good, wifiUUID, strings.ToLower(scepUUID))),
			"payload 2 (com.example.wifi): PayloadUUID cb90e976-ad44-4b69-8108-8095e6260978 is used more than once"},
		{"identity names the mdm payload", []byte(replaceOnce(t, good, identKey+scepUUID, identKey+mdmUUID)),
			"does not name the PayloadUUID of another payload"},
		{"identity names the profile", []byte(replaceOnce(t, good, identKey+scepUUID, identKey+profileUUID)),
			"does not name the PayloadUUID of another payload"},
		{"missing IdentityCertificateUUID", []byte(replaceOnce(t, good,
			"\t\t\t"+identKey+scepUUID+"</string>\n", "")),
			"payload 3 (com.github.micromdm.nanomdm.mdm) has no IdentityCertificateUUID"},
		{"empty Topic", []byte(replaceOnce(t, good,
			"<string>com.apple.mgmt.External.YOUR-PUSH-TOPIC-HERE</string>", "<string> </string>")),
			"Topic is empty"},
		{"ServerURL not a string", []byte(replaceOnce(t, good,
			"<string>https://mdm.example.org/mdm</string>", "<integer>1</integer>")),
			"ServerURL is an integer, not a string"},
		{"ServerURL without host", []byte(replaceOnce(t, good,
			"<string>https://mdm.example.org/mdm</string>", "<string>https:///mdm</string>")),
			"is not an https URL"},
		{"CheckInURL not https", []byte(replaceOnce(t, good,
			"https://mdm.example.org/mdm/checkin", "http://mdm.example.org/mdm/checkin")),
			`CheckInURL "http://mdm.example.org/mdm/checkin" is not an https URL`},
		{"CheckInURL not a string", []byte(replaceOnce(t, good,
			"<string>https://mdm.example.org/mdm/checkin</string>", "<true/>")),
			"CheckInURL is a boolean, not a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := ParseTemplate(tc.data)
			if err == nil {
				t.Fatalf("ParseTemplate succeeded (ServerURL %q), want error containing %q", tpl.ServerURL(), tc.want)
			}
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error %v (%T) is not a *TemplateError", err, err)
			}
			if !strings.Contains(te.Problem, tc.want) {
				t.Errorf("Problem = %q, want it to contain %q", te.Problem, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "enrollment profile template: ") {
				t.Errorf("Error() = %q, want the template prefix", err.Error())
			}
		})
	}
}

// replaceOnce replaces the first occurrence of old in s and fails the test if there is none.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("fixture does not contain %q", old)
	}
	return strings.Replace(s, old, new, 1)
}
