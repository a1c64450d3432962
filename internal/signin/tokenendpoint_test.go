package signin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/token"
)

// Every malformed or refused token request gets an RFC 6749 §5.2 JSON
// error with no-store; none of them spends the code, which still works
// afterwards.
func TestTokenEndpointRefusals(t *testing.T) {
	e := newOAuthEnv(t, false)
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	good := iosCodeBody(code)
	contentType := func(ct string) func(*http.Request) {
		return func(r *http.Request) {
			if ct == "" {
				r.Header.Del("Content-Type")
				return
			}
			r.Header.Set("Content-Type", ct)
		}
	}
	unknownCode, _, _ := token.Mint(nil)
	for name, c := range map[string]struct {
		body   string
		opt    func(*http.Request)
		status int
		code   string
	}{
		"GET":                        {good, func(r *http.Request) { r.Method = http.MethodGet }, 405, token.ErrCodeInvalidRequest},
		"PUT":                        {good, func(r *http.Request) { r.Method = http.MethodPut }, 405, token.ErrCodeInvalidRequest},
		"no content type":            {good, contentType(""), 400, token.ErrCodeInvalidRequest},
		"JSON":                       {`{"grant_type":"authorization_code"}`, contentType("application/json"), 400, token.ErrCodeInvalidRequest},
		"multipart":                  {good, contentType("multipart/form-data; boundary=x"), 400, token.ErrCodeInvalidRequest},
		"text/plain":                 {good, contentType("text/plain"), 400, token.ErrCodeInvalidRequest},
		"malformed content type":     {good, contentType("application/x-www-form-urlencoded; ="), 400, token.ErrCodeInvalidRequest},
		"repeated code":              {good + "&code=" + code, nil, 400, token.ErrCodeInvalidRequest},
		"repeated client_id":         {good + "&client_id=" + deviceClientID, nil, 400, token.ErrCodeInvalidRequest},
		"repeated grant_type":        {"grant_type=authorization_code&" + good, nil, 400, token.ErrCodeInvalidRequest},
		"repeated after decoding":    {good + "&%63lient_id=" + deviceClientID, nil, 400, token.ErrCodeInvalidRequest},
		"bad escape":                 {good + "&x=%G0", nil, 400, token.ErrCodeInvalidRequest},
		"truncated escape":           {good + "&x=%4", nil, 400, token.ErrCodeInvalidRequest},
		"escaped NUL":                {good + "&x=%00", nil, 400, token.ErrCodeInvalidRequest},
		"raw newline":                {good + "\n", nil, 400, token.ErrCodeInvalidRequest},
		"empty name":                 {good + "&=x", nil, 400, token.ErrCodeInvalidRequest},
		"17 parameters":              {good + "&" + manyParams(13).String(), nil, 400, token.ErrCodeInvalidRequest},
		"unknown client":             {strings.Replace(good, "client_id="+deviceClientID, "client_id=someone-else", 1), nil, 401, token.ErrCodeInvalidClient},
		"client in another case":     {strings.Replace(good, "client_id="+deviceClientID, "client_id=MDMAUTH-DEVICE", 1), nil, 401, token.ErrCodeInvalidClient},
		"no client_id":               {strings.Replace(good, "&client_id="+deviceClientID, "", 1), nil, 401, token.ErrCodeInvalidClient},
		"empty body":                 {"", nil, 401, token.ErrCodeInvalidClient},
		"parameters in the URL":      {"", func(r *http.Request) { r.URL.RawQuery = good }, 401, token.ErrCodeInvalidClient},
		"password grant":             {"grant_type=password&username=a&password=b&client_id=" + deviceClientID, nil, 400, token.ErrCodeUnsupportedGrantType},
		"client_credentials grant":   {"grant_type=client_credentials&client_id=" + deviceClientID, nil, 400, token.ErrCodeUnsupportedGrantType},
		"device code grant":          {"grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x&client_id=" + deviceClientID, nil, 400, token.ErrCodeUnsupportedGrantType},
		"grant type in another case": {strings.Replace(good, "authorization_code", "Authorization_Code", 1), nil, 400, token.ErrCodeUnsupportedGrantType},
		"no grant_type":              {strings.Replace(good, "grant_type=authorization_code&", "", 1), nil, 400, token.ErrCodeInvalidRequest},
		"empty grant_type":           {strings.Replace(good, "grant_type=authorization_code", "grant_type=", 1), nil, 400, token.ErrCodeInvalidRequest},
		"no code":                    {"grant_type=authorization_code&redirect_uri=" + DefaultRedirectURL + "&client_id=" + deviceClientID, nil, 400, token.ErrCodeInvalidRequest},
		"empty code":                 {iosCodeBody(""), nil, 400, token.ErrCodeInvalidRequest},
		"no redirect_uri":            {"grant_type=authorization_code&code=" + code + "&client_id=" + deviceClientID, nil, 400, token.ErrCodeInvalidRequest},
		"unknown code":               {iosCodeBody(unknownCode), nil, 400, token.ErrCodeInvalidGrant},
		"malformed code":             {iosCodeBody(code[:42]), nil, 400, token.ErrCodeInvalidGrant},
		"code with a plus":           {iosCodeBody("+" + code[1:]), nil, 400, token.ErrCodeInvalidGrant},
		"no refresh_token":           {"grant_type=refresh_token&client_id=" + deviceClientID, nil, 400, token.ErrCodeInvalidRequest},
		"empty refresh_token":        {iosRefreshBody(""), nil, 400, token.ErrCodeInvalidRequest},
		"malformed refresh_token":    {iosRefreshBody("not-a-refresh-token"), nil, 400, token.ErrCodeInvalidGrant},
		"unknown refresh_token":      {iosRefreshBody("AAAAAAAAAAAAAAAA." + unknownCode), nil, 400, token.ErrCodeInvalidGrant},
		"code as refresh_token":      {iosRefreshBody(code), nil, 400, token.ErrCodeInvalidGrant},
	} {
		t.Run(name, func(t *testing.T) {
			var opts []func(*http.Request)
			if c.opt != nil {
				opts = append(opts, c.opt)
			}
			w := e.tokenReq(c.body, opts...)
			wantTokenError(t, w, c.status, c.code)
			if c.status == 405 && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("405 with Allow %q", w.Header().Get("Allow"))
			}
			if c.status == 401 && w.Header().Get("WWW-Authenticate") != "" {
				t.Errorf("invalid_client challenges a public client: %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
	if e.st.tokenCount() != 0 {
		t.Fatalf("refused requests stored %d tokens", e.st.tokenCount())
	}
	// The unknown client is logged by reason, never with the body.
	if n := len(e.logs.FilterMessage("token request refused").FilterFieldKey("reason").All()); n == 0 {
		t.Errorf("refusals are not logged")
	}
	// The code is still good, with a charset in the content type.
	e.tokensIssued(e.tokenReq(good, contentType("application/x-www-form-urlencoded; charset=UTF-8")))
}

// The body is bounded (16 KiB by default, MaxTokenBody when set): a body
// at the limit is read, one byte more is 413.
func TestTokenEndpointBodyLimit(t *testing.T) {
	for name, limit := range map[string]int64{"default": 0, "configured": 1024} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			e.web.OAuth2.MaxTokenBody = limit
			max := limit
			if max == 0 {
				max = 16 << 10
			}
			code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
			pad := func(body string, size int64) string {
				body += "&pad="
				return body + strings.Repeat("p", int(size)-len(body))
			}
			over := pad(iosCodeBody(code), max+1)
			w := e.tokenReq(over)
			wantTokenError(t, w, http.StatusRequestEntityTooLarge, token.ErrCodeInvalidRequest)
			big := pad(iosCodeBody(code), 1<<20)
			wantTokenError(t, e.tokenReq(big), http.StatusRequestEntityTooLarge, token.ErrCodeInvalidRequest)
			exact := pad(iosCodeBody(code), max)
			if int64(len(exact)) != max || int64(len(over)) != max+1 {
				t.Fatalf("bodies of %d and %d bytes", len(exact), len(over))
			}
			e.tokensIssued(e.tokenReq(exact))
		})
	}
}

// A body that cannot be read is a 400.
func TestTokenEndpointUnreadableBody(t *testing.T) {
	e := newOAuthEnv(t, false)
	w := e.tokenReq("", func(r *http.Request) { r.Body = errBody{} })
	wantTokenError(t, w, http.StatusBadRequest, token.ErrCodeInvalidRequest)
}

type errBody struct{}

func (errBody) Read([]byte) (int, error) { return 0, errTransient }
func (errBody) Close() error             { return nil }

// The refresh token rotates on every refresh; the replaced one gets the
// same pair again within the grace window (a lost response) and revokes
// the whole family after it.
func TestTokenEndpointRefreshRotation(t *testing.T) {
	e := newOAuthEnv(t, false)
	tr := e.signInForTokens()
	next := e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	again := e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if again != next {
		t.Errorf("a retry within the grace window got another pair")
	}
	e.clock.Advance(token.DefaultRefreshGrace + 1)
	wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	if e.accessValid(next.AccessToken) || e.accessValid(tr.AccessToken) {
		t.Errorf("access tokens survived the reuse of a refresh token")
	}
	wantTokenError(t, e.tokenReq(iosRefreshBody(next.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	if f := e.familyOf(tr.RefreshToken); f.RevokeReason != "refresh_reuse" {
		t.Errorf("family revoke reason %q", f.RevokeReason)
	}
	// A refresh token is bound to its client.
	e2 := newOAuthEnv(t, false)
	tr2 := e2.signInForTokens()
	e2.web.OAuth2.ClientID = "renamed"
	wantTokenError(t, e2.tokenReq("grant_type=refresh_token&refresh_token="+tr2.RefreshToken+"&client_id=renamed"), http.StatusBadRequest, token.ErrCodeInvalidGrant)
}

// Two refreshes with the same token at the same time: the one that loses
// the race gets the winner's pair (the grace window), not an error.
func TestTokenEndpointRefreshRace(t *testing.T) {
	e := newOAuthEnv(t, false)
	tr := e.signInForTokens()
	var second *httptest.ResponseRecorder
	e.st.mu.Lock()
	e.st.beforeUpdateFamily = func() { second = e.tokenReq(iosRefreshBody(tr.RefreshToken)) }
	e.st.mu.Unlock()
	first := e.tokenReq(iosRefreshBody(tr.RefreshToken))
	if second == nil {
		t.Fatal("the second refresh did not run")
	}
	won := e.tokensIssued(second)
	if first.Code != http.StatusOK {
		t.Fatalf("the refresh that lost the race: status %d, want 200 with the same pair; body %s", first.Code, first.Body)
	}
	if lost := e.tokensIssued(first); lost != won {
		t.Errorf("the refresh that lost the race got another pair")
	}
}
