package signin

import (
	"html/template"
	"net/http"
)

// SecurityHeaders sets the headers every sign-in response carries. The CSP
// allows the final redirect to the device's callback scheme.
func SecurityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' apple-remotemanagement-user-login:; frame-ancestors 'none'; base-uri 'none'")
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:-apple-system,system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1d1d1f}h1{font-size:1.4rem}p{line-height:1.5}.code{color:#6e6e73;font-size:.85rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p><p class="code">Error {{.Status}}{{if .Reason}} · {{.Reason}}{{end}}</p></body></html>
`))

// Page writes an HTML error page. Title and message are shown to the user;
// reason is a short machine-readable code an administrator can search for.
func Page(w http.ResponseWriter, status int, title, message, reason string) {
	SecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct {
		Title, Message, Reason string
		Status                 int
	}{title, message, reason, status})
}
