package device_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
)

const loginPage = `<!DOCTYPE html>
<html><head><title>Sign in</title><style>p{color:red}</style></head><body>
<form action="/search" method="get"><input name="q"></form>
<form method="POST" action="submit">
  <input type="hidden" name="csrf" value="tok123">
  <input type="text" name="nickname" value="keep">
  <input type="email" name="email">
  <input type="password" name="password">
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="newsletter" value="yes">
  <select name="realm"><option value="a">A</option><option value="corp" selected>Corp</option></select>
  <button type="submit" name="action" value="login">Sign in</button>
  <button type="submit" name="action" value="cancel">Cancel</button>
</form></body></html>`

func TestFormBrowserSignIn(t *testing.T) {
	var posted url.Values
	var gotUA, gotCookie string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/"})
		http.Redirect(w, r, "/idp/login", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /idp/login", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, loginPage)
	})
	mux.HandleFunc("POST /idp/submit", func(w http.ResponseWriter, r *http.Request) {
		gotUA = r.Header.Get("User-Agent")
		if c, err := r.Cookie("session"); err == nil {
			gotCookie = c.Value
		}
		r.ParseForm()
		posted = r.PostForm
		// A 307 keeps the POST and its body.
		http.Redirect(w, r, "/idp/continue", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("POST /idp/continue", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("csrf") != "tok123" {
			http.Error(w, "body lost on 307", 400)
			return
		}
		http.Redirect(w, r, "/done", http.StatusFound)
	})
	mux.HandleFunc("GET /done", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "apple-remotemanagement-user-login://authentication-results?access-token=abc%2Bdef")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := &device.FormBrowser{Client: srv.Client(), Username: "alice@example.com", Password: "pw&=+"}
	cb, err := b.SignIn(testContext(t), srv.URL+"/start?user-identifier=alice@example.com")
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	if cb != "apple-remotemanagement-user-login://authentication-results?access-token=abc%2Bdef" {
		t.Errorf("callback = %q", cb)
	}
	if tok, err := device.ParseSignInCallback(cb); err != nil || tok != "abc+def" {
		t.Errorf("ParseSignInCallback = %q, %v", tok, err)
	}
	want := url.Values{
		"csrf": {"tok123"}, "nickname": {"keep"}, "email": {"alice@example.com"}, "password": {"pw&=+"},
		"remember": {"on"}, "realm": {"corp"}, "action": {"login"},
	}
	if posted.Encode() != want.Encode() {
		t.Errorf("posted form = %v, want %v", posted, want)
	}
	if gotCookie != "s1" || gotUA != device.SafariUserAgent {
		t.Errorf("cookie %q, User-Agent %q", gotCookie, gotUA)
	}
}

func TestFormBrowserGETFormAndFirstTextInput(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<form action="/check"><input name="user"><input name="pass" type="password"></form>`)
	})
	mux.HandleFunc("GET /check", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("user") != "bob" || r.URL.Query().Get("pass") != "pw" {
			http.Error(w, "wrong", 401)
			return
		}
		w.Header().Set("Location", "apple-remotemanagement-user-login://authentication-results?access-token=t")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := &device.FormBrowser{Client: srv.Client(), Username: "bob", Password: "pw"}
	if _, err := b.SignIn(testContext(t), srv.URL+"/login"); err != nil {
		t.Fatalf("SignIn: %v", err)
	}
}

func TestFormBrowserFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{name: "error page",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, "<html><head><script>var x=1;</script></head><body><h1>Forbidden</h1>\n<p>user   not allowed</p></body></html>")
			},
			check: func(t *testing.T, err error) {
				var se *device.SignInError
				if !errors.As(err, &se) || se.Status != 403 || se.Snippet != "Forbidden user not allowed" {
					t.Fatalf("error = %v, want SignInError 403 with the page text", err)
				}
			}},
		{name: "no form",
			handler: func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "<p>Please wait</p>") },
			check: func(t *testing.T, err error) {
				var se *device.SignInError
				if !errors.As(err, &se) || se.Status != 200 || !strings.Contains(se.Reason, "no login form") {
					t.Fatalf("error = %v", err)
				}
			}},
		{name: "final 302",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "apple-remotemanagement-user-login://authentication-results?access-token=t", http.StatusFound)
			},
			check: deviationWith("is a 302; the device requires 308")},
		{name: "CSP blocks the form's own action",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Security-Policy", "form-action 'self'")
				w.Header().Set("Content-Type", "text/html")
				io.WriteString(w, `<form method="post" action="https://idp.example.net/login"><input name="username"><input type="password" name="password"></form>`)
			},
			check: deviationWith("blocks its own form action https://idp.example.net/login")},
		{name: "unsupported scheme",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "ftp://example.com/")
				w.WriteHeader(http.StatusFound)
			},
			check: deviationWith(`redirect to unsupported scheme "ftp"`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			b := &device.FormBrowser{Client: srv.Client(), Username: "u", Password: "p"}
			cb, err := b.SignIn(testContext(t), srv.URL+"/")
			if err == nil {
				t.Fatalf("SignIn = %q, want an error", cb)
			}
			tc.check(t, err)
		})
	}
}

func TestFormBrowserRedirectLoop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/again", http.StatusFound)
	}))
	defer srv.Close()
	b := &device.FormBrowser{Client: srv.Client(), MaxSteps: 5}
	if _, err := b.SignIn(testContext(t), srv.URL+"/"); err == nil || !strings.Contains(err.Error(), "no callback after 5 steps") {
		t.Fatalf("error = %v", err)
	}
}
