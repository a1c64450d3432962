package signin

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
)

const formMediaType = "application/x-www-form-urlencoded"

// tokenFormCounter counts the bytes read from r.
type tokenFormCounter struct {
	r io.Reader
	n int64
}

func (c *tokenFormCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// tokenFormEndless yields n bytes of one form parameter without holding them.
type tokenFormEndless struct{ n, off int64 }

func (e *tokenFormEndless) Read(p []byte) (int, error) {
	if e.off >= e.n {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n-e.off {
		p = p[:e.n-e.off]
	}
	for i := range p {
		if e.off == 0 && i == 0 {
			p[i] = 'x' // "x=ppp…": one parameter
		} else if e.off == 0 && i == 1 {
			p[i] = '='
		} else {
			p[i] = 'p'
		}
	}
	e.off += int64(len(p))
	return len(p), nil
}

// readTokenFormAt runs readTokenForm as TokenEndpoint does, the body bounded by
// http.MaxBytesReader at limit; it returns the bytes taken from body.
func readTokenFormAt(contentType string, body io.Reader, limit int64) (Params, *tokenFormError, int64) {
	cr := &tokenFormCounter{r: body}
	p, ferr := readTokenForm(contentType, http.MaxBytesReader(nil, io.NopCloser(cr), limit))
	return p, ferr, cr.n
}

// iosTokenBody is an authorization_code request as iOS sends it: ':' and '/'
// of the redirect URI are not percent-encoded.
const iosTokenBody = "grant_type=authorization_code&code=dgOlRa30ONgF-OOA-t590SA5bIqQuejZHJRVwsM3MtY" +
	"&redirect_uri=apple-remotemanagement-user-login:/oauth2/redirection&client_id=mdmauth-device"

func TestReadTokenForm(t *testing.T) {
	var names []string
	for i := 0; i < 17; i++ {
		names = append(names, fmt.Sprintf("p%d=1", i))
	}
	sixteen, seventeen := strings.Join(names[:16], "&"), strings.Join(names, "&")
	for name, c := range map[string]struct {
		contentType string
		body        string
		limit       int64
		status      int    // 0: accepted
		desc        string // the refusal's description
		want        Params
	}{
		"device's code request": {formMediaType, iosTokenBody, 16 << 10, 0, "", Params{
			"grant_type": "authorization_code", "code": "dgOlRa30ONgF-OOA-t590SA5bIqQuejZHJRVwsM3MtY",
			"redirect_uri": DefaultRedirectURL, "client_id": "mdmauth-device"}},
		"charset parameter":      {formMediaType + "; charset=UTF-8", "a=1", 64, 0, "", Params{"a": "1"}},
		"media type in capitals": {"Application/X-WWW-Form-URLEncoded", "a=1", 64, 0, "", Params{"a": "1"}},
		"plus is a plus":         {formMediaType, "login_hint=a+b@example.com", 64, 0, "", Params{"login_hint": "a+b@example.com"}},
		"percent escapes":        {formMediaType, "a=%2B%20%3A", 64, 0, "", Params{"a": "+ :"}},
		"empty body":             {formMediaType, "", 64, 0, "", Params{}},
		"body at the limit":      {formMediaType, "a=1234", 6, 0, "", Params{"a": "1234"}},
		"sixteen parameters":     {formMediaType, sixteen, 1024, 0, "", nil},

		"one byte past the limit": {formMediaType, "a=12345", 6, http.StatusRequestEntityTooLarge, "request too large", nil},
		"no content type":         {"", "a=1", 64, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"JSON":                    {"application/json", `{"a":"1"}`, 64, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"multipart":               {"multipart/form-data; boundary=x", "a=1", 64, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"bad media parameter":     {formMediaType + "; charset", "a=1", 64, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"form type as a prefix":   {formMediaType + "x", "a=1", 64, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"wrong type, too large":   {"text/plain", "a=12345", 6, http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded", nil},
		"repeated parameter":      {formMediaType, "client_id=a&client_id=a", 64, http.StatusBadRequest, "malformed or repeated parameters", nil},
		"repeated after decoding": {formMediaType, "client_id=a&%63lient_id=b", 64, http.StatusBadRequest, "malformed or repeated parameters", nil},
		"seventeen parameters":    {formMediaType, seventeen, 1024, http.StatusBadRequest, "malformed or repeated parameters", nil},
		"bad escape":              {formMediaType, "a=%zz", 64, http.StatusBadRequest, "malformed or repeated parameters", nil},
		"control character":       {formMediaType, "a=%0A", 64, http.StatusBadRequest, "malformed or repeated parameters", nil},
		"empty name":              {formMediaType, "=1", 64, http.StatusBadRequest, "malformed or repeated parameters", nil},
	} {
		t.Run(name, func(t *testing.T) {
			p, ferr, read := readTokenFormAt(c.contentType, strings.NewReader(c.body), c.limit)
			if c.status != 0 {
				if ferr == nil || ferr.status != c.status || ferr.desc != c.desc || p != nil {
					t.Fatalf("got %v, %+v; want %d %q", p, ferr, c.status, c.desc)
				}
				if c.desc == "Content-Type must be application/x-www-form-urlencoded" && read != 0 {
					t.Errorf("%d bytes read before the Content-Type was refused", read)
				}
				return
			}
			if ferr != nil {
				t.Fatalf("refused: %+v", ferr)
			}
			if c.want != nil && !maps.Equal(p, c.want) {
				t.Errorf("params %q, want %q", p, c.want)
			}
			if c.want == nil && len(p) != 16 {
				t.Errorf("%d params, want 16", len(p))
			}
		})
	}
}

// A body far past the limit, sent without a length, is refused after
// reading at most one byte more than the limit.
func TestReadTokenFormBounded(t *testing.T) {
	const limit = 16 << 10
	_, ferr, read := readTokenFormAt(formMediaType, &tokenFormEndless{n: 64 << 20}, limit)
	if ferr == nil || ferr.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("refusal %+v, want 413", ferr)
	}
	if read > limit+1 {
		t.Errorf("%d bytes read, want at most %d", read, limit+1)
	}
}

// A body that fails to read (not the limit) is a 400.
func TestReadTokenFormUnreadable(t *testing.T) {
	_, ferr, _ := readTokenFormAt(formMediaType, io.MultiReader(strings.NewReader("a=1"), errReader{}), 64)
	if ferr == nil || ferr.status != http.StatusBadRequest || ferr.desc != "cannot read the request" {
		t.Fatalf("refusal %+v, want 400 cannot read the request", ferr)
	}
}

// FuzzTokenForm: the token endpoint's form reader never panics; a
// Content-Type that is not the form type is refused (400) before a byte of
// the body is read; past the bound the answer is 413 and at most one byte
// more than the bound is read, within it never 413; a refusal holds no
// parameters; what it accepts is at most 16 parameters without control
// characters, exactly what ParseParams reads from the body, and, where the
// body has no '+' or ';' (read differently by net/url), what
// net/url.ParseQuery reads, each parameter once.
func FuzzTokenForm(f *testing.F) {
	f.Add(formMediaType, []byte(iosTokenBody), 16<<10)
	f.Add(formMediaType+"; charset=UTF-8", []byte("grant_type=refresh_token&refresh_token=AAAAAAAAAAAAAAAA.abc&client_id=x"), 16<<10)
	f.Add("application/json", []byte(`{"grant_type":"authorization_code"}`), 16<<10)
	f.Add(formMediaType, []byte("a=12345"), 6)
	f.Fuzz(func(t *testing.T, contentType string, body []byte, limit int) {
		if limit <= 0 || limit > 1<<16 {
			limit = 16 << 10
		}
		p, ferr, read := readTokenFormAt(contentType, bytes.NewReader(body), int64(limit))
		if read > int64(limit)+1 {
			t.Fatalf("%d bytes read with a limit of %d", read, limit)
		}
		if ferr != nil {
			if p != nil || ferr.desc == "" || ferr.status != http.StatusBadRequest && ferr.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("refusal %+v with params %q", ferr, p)
			}
		}
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != formMediaType {
			if ferr == nil || ferr.status != http.StatusBadRequest || read != 0 {
				t.Fatalf("Content-Type %q: refusal %+v after reading %d bytes, want 400 before reading", contentType, ferr, read)
			}
			return
		}
		if len(body) > limit {
			if ferr == nil || ferr.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body, limit %d: refusal %+v, want 413", len(body), limit, ferr)
			}
			return
		}
		if ferr != nil {
			if ferr.status == http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body within the limit %d refused as too large", len(body), limit)
			}
			if _, err := ParseParams(string(body), 16); err == nil {
				t.Fatalf("refused %q, which ParseParams reads: %+v", body, ferr)
			}
			return
		}
		if len(p) > 16 {
			t.Fatalf("%d params accepted", len(p))
		}
		for k, v := range p {
			if k == "" || strings.ContainsFunc(k+v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("accepted %q=%q", k, v)
			}
		}
		if want, err := ParseParams(string(body), 16); err != nil || !maps.Equal(p, want) {
			t.Fatalf("read %q from %q; ParseParams reads %q, %v", p, body, want, err)
		}
		if bytes.ContainsAny(body, "+;") {
			return
		}
		q, err := url.ParseQuery(string(body))
		if err != nil || len(q) != len(p) {
			t.Fatalf("accepted %q as %q; net/url reads %q, %v", body, p, q, err)
		}
		for k, v := range p {
			if vs := q[k]; len(vs) != 1 || vs[0] != v {
				t.Fatalf("accepted %q as %q; net/url reads %q", body, p, q)
			}
		}
	})
}

// ParseParams costs no memory per separator: a query or form of a megabyte
// of '&' (which any server's header or body bound lets through) allocates
// next to nothing, where splitting it first would allocate 16 bytes for
// every '&'.
func TestParseParamsSeparatorsCostNoMemory(t *testing.T) {
	raw := strings.Repeat("&", 1<<20) + "a=1"
	least := uint64(math.MaxUint64)
	for i := 0; i < 3; i++ { // the least of three: another goroutine may allocate meanwhile
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p, err := ParseParams(raw, 16)
		runtime.ReadMemStats(&after)
		if err != nil || p["a"] != "1" {
			t.Fatalf("ParseParams: %q, %v", p, err)
		}
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > 64<<10 {
		t.Errorf("parsing a megabyte of separators allocated %d bytes", least)
	}
}
