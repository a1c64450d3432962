package apple

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// addFileSeeds adds every file matching pattern under testdata as a seed.
func addFileSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzPeekMessage(f *testing.F) {
	addFileSeeds(f, "checkin/*.plist")
	addFileSeeds(f, "malformed/*")
	f.Add([]byte(`<dict><key>U&#68;ID</key><string>a&#xD;&#10;b</string></dict>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := PeekMessage(body)
		if err != nil {
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("error %T %v is not a *MalformedError", err, err)
			}
			if m != (Message{}) {
				t.Fatalf("non-zero Message %+v with an error", m)
			}
			return
		}
		for _, v := range []string{m.MessageType, m.Status, m.CommandUUID, m.UDID, m.EnrollmentID, m.UserID, m.EnrollmentUserID, m.Model, m.ProductName, m.Topic} {
			if !utf8.ValidString(v) {
				t.Fatalf("invalid UTF-8 value %q", v)
			}
		}
		if ref, ok := decodeDict(body); ok {
			if diff := compareWithDict(m, ref); diff != "" {
				t.Fatal(diff)
			}
		}
	})
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a-b_c.d~e+f/g==", "Bearer  x", "Basic abc", "Bearer =", "BEARER Zm9v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := ParseBearer(header)
		if !ok {
			if token != "" {
				t.Fatalf("token %q returned with ok=false", token)
			}
			return
		}
		if len(header) > maxAuthorizationHeader || !strings.EqualFold(header[:7], "Bearer ") || header[7:] != token {
			t.Fatalf("ParseBearer(%q) = %q", header, token)
		}
		trimmed := strings.TrimRight(token, "=")
		if trimmed == "" {
			t.Fatalf("token %q has no content", token)
		}
		for i := 0; i < len(trimmed); i++ {
			if !isB64TokenChar(trimmed[i]) {
				t.Fatalf("token %q has byte %q", token, trimmed[i])
			}
		}
		if again, ok := ParseBearer("Bearer " + token); !ok || again != token {
			t.Fatalf("round trip of %q failed", token)
		}
	})
}

func FuzzParseDiscoveryQuery(f *testing.F) {
	for _, s := range []string{
		"user-identifier=alice@example.com&model-family=iPhone",
		"user-identifier=a+b@Example.com",
		"user-identifier=a%40b@example.com",
		"model-family=Mac&user-identifier=x@y&z",
		"user-identifier=%zz",
		"user-identifier=a@b&user-identifier=c@d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req, err := ParseDiscoveryQuery(q)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Message == "" {
				t.Fatalf("error %T %v is not a *RequestError with a message", err, err)
			}
			return
		}
		if len(q) > maxDiscoveryQuery {
			t.Fatal("accepted an over-long query")
		}
		id := req.UserIdentifier
		if len(id) > maxUserIdentifierLen || !utf8.ValidString(id) || strings.Count(id, "@") != 1 {
			t.Fatalf("accepted identifier %q", id)
		}
		if strings.ContainsAny(id, " \t\r\n\x00\x7f") {
			t.Fatalf("accepted identifier %q with spaces or controls", id)
		}
		local, domain, _ := strings.Cut(id, "@")
		if local == "" || local != req.LocalPart || req.Domain != strings.ToLower(domain) || req.Domain == "" {
			t.Fatalf("split %q into %q, %q", id, req.LocalPart, req.Domain)
		}
		if req.ModelFamily != "" && !knownModelFamily(req.ModelFamily) {
			t.Fatalf("accepted model-family %q", req.ModelFamily)
		}
	})
}

func FuzzChallengeRoundTrip(f *testing.F) {
	f.Add("apple-as-web", "url", "https://mdm.example.com/sign-in/x", "", "", `Bearer method="apple-as-web", url="https://x/"`)
	f.Add("apple-oauth2", "client-id", "c", "scope", "openid email", `Bearer method="apple-oauth2", client-id="c", scope="a b"`)
	f.Add("a", "b", `"`, "c", "\\", `Bearer method="a",b="c"`)
	f.Fuzz(func(t *testing.T, method, n1, v1, n2, v2, header string) {
		params := []Param{{n1, v1}}
		if n2 != "" {
			params = append(params, Param{n2, v2})
		}
		if h, err := RenderChallenge(method, params...); err == nil {
			m, p, err := ParseChallenge(h)
			if err != nil {
				t.Fatalf("ParseChallenge(%q): %v", h, err)
			}
			if m != method || len(p) != len(params) {
				t.Fatalf("round trip of %q gave %q, %v", h, m, p)
			}
			for i := range p {
				if p[i] != params[i] {
					t.Fatalf("round trip of %q gave %q, %v", h, m, p)
				}
			}
		}
		if m, p, err := ParseChallenge(header); err == nil {
			h, err := RenderChallenge(m, p...)
			if err != nil {
				t.Fatalf("RenderChallenge of parsed %q: %v", header, err)
			}
			if h != header {
				t.Fatalf("ParseChallenge accepted %q, which renders as %q", header, h)
			}
		}
	})
}

func FuzzDecodeEnrollBody(f *testing.F) {
	f.Add([]byte(enrollPlist))
	f.Add(signEnrollBody(f, []byte(enrollPlist)))
	f.Add(signEnrollBody(f, []byte("<plist><array><dict/></array></plist>")))
	addFileSeeds(f, "enroll/*")
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := DecodeEnrollBody(body)
		if err != nil {
			if strings.Contains(err.Error(), "decoder panic") {
				t.Fatalf("decoder panicked: %v", err)
			}
			if info != (EnrollInfo{}) {
				t.Fatalf("non-zero EnrollInfo %+v with an error", info)
			}
		}
	})
}
