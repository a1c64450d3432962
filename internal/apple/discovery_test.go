package apple

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseDiscoveryQuery(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  DiscoveryRequest
		bad   bool
	}{
		{
			name:  "device query",
			query: "user-identifier=alice@example.com&model-family=iPhone",
			want:  DiscoveryRequest{UserIdentifier: "alice@example.com", LocalPart: "alice", Domain: "example.com", ModelFamily: "iPhone"},
		},
		{
			name:  "plus stays plus",
			query: "user-identifier=a+b@example.com&model-family=iPad",
			want:  DiscoveryRequest{UserIdentifier: "a+b@example.com", LocalPart: "a+b", Domain: "example.com", ModelFamily: "iPad"},
		},
		{
			name:  "percent-decoding",
			query: "user-identifier=a%2Bb%40Example.COM&model-family=Mac",
			want:  DiscoveryRequest{UserIdentifier: "a+b@Example.COM", LocalPart: "a+b", Domain: "example.com", ModelFamily: "Mac"},
		},
		{
			name:  "encoded parameter name",
			query: "user%2Didentifier=bob@example.org",
			want:  DiscoveryRequest{UserIdentifier: "bob@example.org", LocalPart: "bob", Domain: "example.org"},
		},
		{
			name:  "domain lower-cased, local part kept",
			query: "user-identifier=Alice.Smith@Corp.Example.COM&model-family=RealityDevice",
			want:  DiscoveryRequest{UserIdentifier: "Alice.Smith@Corp.Example.COM", LocalPart: "Alice.Smith", Domain: "corp.example.com", ModelFamily: "RealityDevice"},
		},
		{
			name:  "model-family first, unknown parameters ignored",
			query: "model-family=Watch&x=1&x=2&user-identifier=w@example.com&&flag",
			want:  DiscoveryRequest{UserIdentifier: "w@example.com", LocalPart: "w", Domain: "example.com", ModelFamily: "Watch"},
		},
		{
			name:  "UTF-8 identifier",
			query: "user-identifier=j%C3%BCrgen@b%C3%BCcher.example",
			want:  DiscoveryRequest{UserIdentifier: "jürgen@bücher.example", LocalPart: "jürgen", Domain: "bücher.example"},
		},
		{
			name:  "identifier of 320 bytes",
			query: "user-identifier=" + strings.Repeat("a", 308) + "@example.com",
			want:  DiscoveryRequest{UserIdentifier: strings.Repeat("a", 308) + "@example.com", LocalPart: strings.Repeat("a", 308), Domain: "example.com"},
		},
		{name: "two @", query: "user-identifier=a@b@example.com", bad: true},
		{name: "encoded second @", query: "user-identifier=a%40b@example.com", bad: true},
		{name: "no @", query: "user-identifier=alice", bad: true},
		{name: "empty local part", query: "user-identifier=@example.com", bad: true},
		{name: "empty domain", query: "user-identifier=alice@", bad: true},
		{name: "empty identifier", query: "user-identifier=&model-family=iPhone", bad: true},
		{name: "identifier without value", query: "user-identifier", bad: true},
		{name: "missing identifier", query: "model-family=iPhone", bad: true},
		{name: "empty query", query: "", bad: true},
		{name: "repeated identifier", query: "user-identifier=a@example.com&user-identifier=b@example.com", bad: true},
		{name: "repeated model-family", query: "user-identifier=a@example.com&model-family=iPhone&model-family=iPhone", bad: true},
		{name: "unknown model-family", query: "user-identifier=a@example.com&model-family=Android", bad: true},
		{name: "model-family wrong case", query: "user-identifier=a@example.com&model-family=iphone", bad: true},
		{name: "empty model-family", query: "user-identifier=a@example.com&model-family=", bad: true},
		{name: "bad percent-encoding", query: "user-identifier=a%2@example.com", bad: true},
		{name: "bad percent-encoding in other parameter", query: "user-identifier=a@example.com&x=%zz", bad: true},
		{name: "encoded space", query: "user-identifier=a%20b@example.com", bad: true},
		{name: "encoded newline", query: "user-identifier=a@example.com%0A", bad: true},
		{name: "encoded NUL", query: "user-identifier=a%00@example.com", bad: true},
		{name: "encoded DEL", query: "user-identifier=a%7F@example.com", bad: true},
		{name: "invalid UTF-8", query: "user-identifier=a%FF@example.com", bad: true},
		{name: "identifier of 321 bytes", query: "user-identifier=" + strings.Repeat("a", 309) + "@example.com", bad: true},
		{name: "query too long", query: "user-identifier=a@example.com&pad=" + strings.Repeat("x", 2048), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDiscoveryQuery(tt.query)
			if tt.bad {
				var re *RequestError
				if !errors.As(err, &re) {
					t.Fatalf("ParseDiscoveryQuery = %+v, %v; want *RequestError", got, err)
				}
				if re.Reason == "" || re.Message == "" {
					t.Errorf("RequestError %+v lacks reason or message", re)
				}
				if got != (DiscoveryRequest{}) {
					t.Errorf("ParseDiscoveryQuery returned %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDiscoveryQuery: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseDiscoveryQuery:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRequestErrorDoesNotLeakInput(t *testing.T) {
	_, err := ParseDiscoveryQuery("user-identifier=secret@one@example.com")
	if err == nil {
		t.Fatal("accepted two '@'")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q contains the identifier", err)
	}
}

func TestSupportsAccountDrivenEnrollment(t *testing.T) {
	for family, want := range map[string]bool{
		"iPhone": true, "iPad": true, "Mac": true, "RealityDevice": true, "": true,
		"AppleTV": false, "Watch": false,
	} {
		if got := SupportsAccountDrivenEnrollment(family); got != want {
			t.Errorf("SupportsAccountDrivenEnrollment(%q) = %v, want %v", family, got, want)
		}
	}
}

func TestDiscoveryResponse(t *testing.T) {
	tests := []struct {
		mode Mode
		url  string
		want string
	}{
		{ModeBYOD, "https://mdm.example.com/mdmauth/enroll", `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll"}]}`},
		{ModeADDE, "https://mdm.example.com/mdmauth/enroll?org=a", `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll?org=a"}]}`},
		{ModeBYOD, `https://x.example/"q"&b<>`, `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://x.example/\"q\"&b<>"}]}`},
	}
	for _, tt := range tests {
		got := DiscoveryResponse(tt.mode, tt.url)
		if string(got) != tt.want {
			t.Errorf("DiscoveryResponse(%q, %q) =\n %s\nwant\n %s", tt.mode, tt.url, got, tt.want)
		}
		var v struct {
			Servers []struct{ Version, BaseURL string }
		}
		if err := json.Unmarshal(got, &v); err != nil || len(v.Servers) != 1 || v.Servers[0].BaseURL != tt.url {
			t.Errorf("DiscoveryResponse does not round-trip: %+v, %v", v, err)
		}
	}
}

func TestWellKnownFailed(t *testing.T) {
	body := WellKnownFailed("no tenant for domain", "Your organization does not use this service.")
	want := `{"code":"com.apple.well-known.failed","description":"no tenant for domain","message":"Your organization does not use this service."}`
	if string(body) != want {
		t.Errorf("WellKnownFailed =\n %s\nwant\n %s", body, want)
	}
	var m map[string]string
	if err := json.Unmarshal(WellKnownFailed(`a"b`, "c\nd"), &m); err != nil {
		t.Fatalf("WellKnownFailed is not JSON: %v", err)
	}
	if len(m) != 3 || m["code"] != "com.apple.well-known.failed" || m["description"] != `a"b` || m["message"] != "c\nd" {
		t.Errorf("WellKnownFailed decoded to %v", m)
	}
}

func TestEnrollmentRefused(t *testing.T) {
	body := EnrollmentRefused("com.example.enrollment.denied", "Ask Sales & IT to allow this device.")
	want := `{"code":"com.example.enrollment.denied","message":"Ask Sales & IT to allow this device."}`
	if string(body) != want {
		t.Errorf("EnrollmentRefused =\n %s\nwant\n %s", body, want)
	}
}

func TestMode(t *testing.T) {
	tests := []struct {
		in         string
		mode       Mode
		version    string
		enrollMode string
		bad        bool
	}{
		{in: "byod", mode: ModeBYOD, version: "mdm-byod", enrollMode: "BYOD"},
		{in: "adde", mode: ModeADDE, version: "mdm-adde", enrollMode: "ADDE"},
		{in: "BYOD", bad: true},
		{in: "mdm-byod", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		m, err := ParseMode(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseMode(%q) = %q, want error", tt.in, m)
			}
			continue
		}
		if err != nil || m != tt.mode {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", tt.in, m, err, tt.mode)
		}
		if v := m.Version(); v != tt.version {
			t.Errorf("%q.Version() = %q, want %q", m, v, tt.version)
		}
		if e := m.EnrollmentMode(); e != tt.enrollMode {
			t.Errorf("%q.EnrollmentMode() = %q, want %q", m, e, tt.enrollMode)
		}
	}
	if v, e := Mode("x").Version(), Mode("x").EnrollmentMode(); v != "" || e != "" {
		t.Errorf("unknown mode renders %q, %q; want empty", v, e)
	}
}
