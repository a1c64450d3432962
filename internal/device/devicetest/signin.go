package devicetest

import (
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
)

const callbackScheme = "apple-remotemanagement-user-login"

var loginTemplate = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html>
    <head>
        <meta charset="UTF-8">
        <title>Login</title>
    </head>
    <body>
        <form method="POST" action="/login/username">
            <input type="hidden" name="id" value="{{.ID}}">
            <div>
                <label for="username">Username:</label>
                <input id="username" name="username" autocomplete="username">
            </div>
            <div>
                <label for="password">Password:</label>
                <input id="password" name="password" type="password" autocomplete="current-password">
            </div>
            <p style="color:red">{{.Error}}</p>
            <button type="submit">Login</button>
        </form>
    </body>
</html>`))

// signIn is the gateway's sign-in URL: it sends the browser to the IdP.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.signInQueries = append(s.signInQueries, r.URL.RawQuery)
	f := s.flows[r.PathValue("flow")]
	s.mu.Unlock()
	if f == nil {
		http.Error(w, "unknown or expired sign-in", http.StatusNotFound)
		return
	}
	if r.URL.Query().Get("user-identifier") == "" {
		http.Error(w, "missing user-identifier", http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, "/login/username?authRequestID="+f.id, http.StatusFound)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r.URL.Query().Get("authRequestID"), "")
}

func (s *Server) renderLogin(w http.ResponseWriter, id, msg string) {
	if s.opts.LoginCSP != "" {
		w.Header().Set("Content-Security-Policy", s.opts.LoginCSP)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	loginTemplate.Execute(w, struct{ ID, Error string }{id, msg})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	id, user, pass := r.FormValue("id"), r.FormValue("username"), r.FormValue("password")
	s.mu.Lock()
	f := s.flows[id]
	s.mu.Unlock()
	if f == nil {
		s.renderLogin(w, id, "request not found")
		return
	}
	if want, ok := s.opts.Users[user]; !ok || want != pass {
		s.renderLogin(w, id, "username or password wrong")
		return
	}
	code := randomID()
	s.mu.Lock()
	f.user = user
	s.codes[code] = f
	delete(s.flows, id)
	s.mu.Unlock()
	http.Redirect(w, r, "/mdmauth/oidc/callback?code="+code, http.StatusFound)
}

// callback ends the web sign-in (308 with the access token) or the OAuth 2
// authorization (308 to redirect_uri with code and state).
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	s.mu.Lock()
	f := s.codes[code]
	if f != nil && !f.oauth {
		delete(s.codes, code)
	}
	s.mu.Unlock()
	if f == nil {
		http.Error(w, "invalid code", http.StatusBadRequest)
		return
	}
	if f.oauth {
		w.Header().Set("Location", f.redirectURI+"?code="+url.QueryEscape(code)+"&state="+url.QueryEscape(f.state))
		w.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	access, _ := s.mintToken(f.user)
	w.Header().Set("Location", callbackScheme+"://authentication-results?access-token="+url.QueryEscape(access))
	w.WriteHeader(http.StatusPermanentRedirect)
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.authorizeRaw = append(s.authorizeRaw, r.URL.RawQuery)
	s.mu.Unlock()
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != "mdm-device" ||
		q.Get("redirect_uri") != callbackScheme+":/oauth2/redirection" || q.Get("state") == "" {
		http.Error(w, "invalid authorization request", http.StatusBadRequest)
		return
	}
	id := randomID()
	s.mu.Lock()
	s.flows[id] = &flow{id: id, oauth: true, redirectURI: q.Get("redirect_uri"), state: q.Get("state")}
	s.mu.Unlock()
	http.Redirect(w, r, "/login/username?authRequestID="+id, http.StatusFound)
}

// token is the OAuth 2 token endpoint. It reads the raw body (the device
// does not encode ':', '/' or '+').
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	body := string(raw)
	s.mu.Lock()
	s.tokenBodies = append(s.tokenBodies, body)
	s.mu.Unlock()
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"`+code+`"}`)
	}
	if r.Header.Get("Authorization") != "" || rawQueryValue(body, "client_id") != "mdm-device" {
		fail("invalid_client")
		return
	}
	var user string
	refreshing := false
	switch rawQueryValue(body, "grant_type") {
	case "authorization_code":
		code := rawQueryValue(body, "code")
		s.mu.Lock()
		f := s.codes[code]
		delete(s.codes, code)
		s.mu.Unlock()
		if f == nil || !f.oauth || rawQueryValue(body, "redirect_uri") != f.redirectURI {
			fail("invalid_grant")
			return
		}
		user = f.user
	case "refresh_token":
		rt := rawQueryValue(body, "refresh_token")
		s.mu.Lock()
		u, ok := s.refreshTokens[rt]
		delete(s.refreshTokens, rt)
		s.mu.Unlock()
		if !ok {
			fail("invalid_grant")
			return
		}
		user, refreshing = u, true
	default:
		fail("unsupported_grant_type")
		return
	}
	access, refresh := s.mintToken(user)
	parts := []string{`"access_token":"` + access + `"`, `"token_type":"Bearer"`, `"expires_in":3600`}
	if !refreshing || !s.opts.NoRefreshOnRefresh {
		parts = append(parts, `"refresh_token":"`+refresh+`"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "{"+strings.Join(parts, ",")+"}")
}
