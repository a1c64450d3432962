package signin

import (
	"errors"
	"maps"
	"net/url"
	"strings"
	"testing"
)

func TestParseParams(t *testing.T) {
	for name, c := range map[string]struct {
		raw  string
		max  int
		want Params // nil: ErrParams
	}{
		"empty":                 {"", 4, Params{}},
		"only separators":       {"&&&", 4, Params{}},
		"two":                   {"a=b&c=d", 4, Params{"a": "b", "c": "d"}},
		"plus stays plus":       {"login_hint=a+b@example.com", 4, Params{"login_hint": "a+b@example.com"}},
		"escaped plus":          {"x=a%2Bb", 4, Params{"x": "a+b"}},
		"lower-case escape":     {"x=a%2bb", 4, Params{"x": "a+b"}},
		"escaped space":         {"x=a%20b", 4, Params{"x": "a b"}},
		"raw space":             {"x=a b", 4, Params{"x": "a b"}},
		"colon and slash":       {"redirect_uri=apple-remotemanagement-user-login:/oauth2/redirection", 4, Params{"redirect_uri": DefaultRedirectURL}},
		"escaped colon, slash":  {"redirect_uri=apple-remotemanagement-user-login%3A%2Foauth2%2Fredirection", 4, Params{"redirect_uri": DefaultRedirectURL}},
		"escaped ampersand":     {"state=a%26b%3Dc", 4, Params{"state": "a&b=c"}},
		"escaped percent":       {"x=100%25", 4, Params{"x": "100%"}},
		"escaped name":          {"%63lient_id=x", 4, Params{"client_id": "x"}},
		"UTF-8":                 {"x=%C3%A9t%C3%A9", 4, Params{"x": "été"}},
		"raw UTF-8":             {"x=été", 4, Params{"x": "été"}},
		"no equals":             {"a&b=1", 4, Params{"a": "", "b": "1"}},
		"empty value":           {"a=&b=1", 4, Params{"a": "", "b": "1"}},
		"equals in value":       {"a==b=", 4, Params{"a": "=b="}},
		"semicolon is data":     {"a=1;b=2", 4, Params{"a": "1;b=2"}},
		"leading, trailing &":   {"&a=1&&b=2&", 4, Params{"a": "1", "b": "2"}},
		"case-sensitive names":  {"a=1&A=2", 4, Params{"a": "1", "A": "2"}},
		"exactly max":           {"a=1&b=2&c=3&d=4", 4, Params{"a": "1", "b": "2", "c": "3", "d": "4"}},
		"empty parts not count": {"a=1&&&&b=2", 2, Params{"a": "1", "b": "2"}},
		"tilde and friends":     {"x=-._~!$'()*,;", 4, Params{"x": "-._~!$'()*,;"}},
		"over max":              {"a=1&b=2&c=3&d=4&e=5", 4, nil},
		"max zero":              {"a=1", 0, nil},
		"duplicate":             {"a=1&a=2", 4, nil},
		"duplicate same value":  {"a=1&a=1", 4, nil},
		"duplicate, no value":   {"a&a", 4, nil},
		"duplicate by escape":   {"a=1&%61=2", 4, nil},
		"empty name":            {"=b", 4, nil},
		"empty pair":            {"a=1&=", 4, nil},
		"lone percent":          {"x=%", 4, nil},
		"truncated escape":      {"x=%4", 4, nil},
		"escape at the end":     {"x=ab%2", 4, nil},
		"bad hex":               {"x=%zz", 4, nil},
		"half bad hex":          {"x=%4g", 4, nil},
		"percent percent":       {"x=%%41", 4, nil},
		"bad escape in name":    {"%x=1", 4, nil},
		"raw NUL":               {"x=a\x00b", 4, nil},
		"raw tab":               {"x=a\tb", 4, nil},
		"raw newline":           {"x=a\nb", 4, nil},
		"raw CR":                {"x=ab\r", 4, nil},
		"raw DEL":               {"x=a\x7fb", 4, nil},
		"escaped NUL":           {"x=%00", 4, nil},
		"escaped newline":       {"x=a%0Ab", 4, nil},
		"escaped DEL":           {"x=%7F", 4, nil},
		"control in name":       {"a%0D=1", 4, nil},
		"raw control in name":   {"a\x01=1", 4, nil},
		"escaped control, rest": {"x=%41%1F", 4, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseParams(c.raw, c.max)
			if c.want == nil {
				if !errors.Is(err, ErrParams) || got != nil {
					t.Errorf("ParseParams(%q) = %q, %v; want ErrParams", c.raw, got, err)
				}
				return
			}
			if err != nil || !maps.Equal(got, c.want) {
				t.Errorf("ParseParams(%q) = %q, %v; want %q", c.raw, got, err, c.want)
			}
		})
	}
}

// Whatever url.Values encodes (the form encoding: '+' for a space)
// decodes here too, except that a '+' stays a plus.
func TestParseParamsReadsFormEncoding(t *testing.T) {
	v := url.Values{
		"grant_type":    {"authorization_code"},
		"redirect_uri":  {DefaultRedirectURL},
		"client_id":     {"a+b/c:d"},
		"code_verifier": {"x~y.z_0-9"},
		"note":          {"50% & more=yes"},
	}
	got, err := ParseParams(v.Encode(), 16)
	if err != nil {
		t.Fatal(err)
	}
	for k := range v {
		want := v.Get(k)
		if k == "note" {
			want = strings.ReplaceAll(want, " ", "+") // the form's space
		}
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}

// escapeParam escapes everything but RFC 3986 unreserved characters.
func escapeParam(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// FuzzParseParams: ParseParams never panics; what it accepts has non-empty
// names, no control characters, at most max entries, and survives an
// escape/parse round trip unchanged.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{
		"",
		"grant_type=authorization_code&code=abc&redirect_uri=apple-remotemanagement-user-login:/oauth2/redirection&client_id=mdmauth-device",
		"grant_type=refresh_token&refresh_token=AAAAAAAAAAAAAAAA.abc&client_id=x",
		"login_hint=a+b@example.com&state=3F2504E0-4F89-41D3-9A0C-0305E82C3301",
		"x=%2B%20%25&&y",
		"a=1&a=2",
		"x=%",
		"x=%0A",
	} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, raw string, max int) {
		if max < 0 || max > 64 {
			max = 16
		}
		p, err := ParseParams(raw, max)
		if err != nil {
			if !errors.Is(err, ErrParams) || p != nil {
				t.Fatalf("error %v with params %q", err, p)
			}
			return
		}
		if len(p) > max {
			t.Fatalf("%d params, max %d", len(p), max)
		}
		var parts []string
		for k, v := range p {
			if k == "" {
				t.Fatalf("empty name accepted")
			}
			for _, s := range []string{k, v} {
				if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Fatalf("control character in %q", s)
				}
			}
			parts = append(parts, escapeParam(k)+"="+escapeParam(v))
		}
		again, err := ParseParams(strings.Join(parts, "&"), max)
		if err != nil || !maps.Equal(again, p) {
			t.Fatalf("round trip of %q: %q, %v", p, again, err)
		}
		if !strings.Contains(raw, "%") && !strings.Contains(raw, "=") && len(p) > 0 {
			for k, v := range p {
				if v != "" || !strings.Contains(raw, k) {
					t.Fatalf("%q: %q=%q from a raw string without '=' or '%%'", raw, k, v)
				}
			}
		}
	})
}
