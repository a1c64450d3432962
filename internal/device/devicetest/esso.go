package devicetest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
)

// Sample Enrollment SSO app.
const (
	ESSOStoreID = 1234567890                   // iTunesStoreID of the sample SSO app
	ESSOAppID   = "ABCDE12345.com.example.sso" // its App ID in test mode
)

// ESSORequest is an Enrollment SSO document request as the server saw it.
type ESSORequest struct {
	UserAgent        string
	HasAuthorization bool
	HasCookie        bool
}

// ESSOURL is the URL the Enrollment SSO header names.
func (s *Server) ESSOURL() string { return s.URL + ESSOPath }

// ESSORequests returns the Enrollment SSO document requests received.
func (s *Server) ESSORequests() []ESSORequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ESSORequest(nil), s.essoRequests...)
}

func (s *Server) setESSOHeader(w http.ResponseWriter) {
	if s.opts.ESSO == nil {
		return
	}
	name := "X-Apple-MDM-ESSO"
	if s.opts.ESSODeveloper {
		name = "X-Apple-MDM-ESSO-Developer"
	}
	w.Header().Set(name, s.ESSOURL())
}

func (s *Server) essoHandler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.essoRequests = append(s.essoRequests, ESSORequest{
		UserAgent:        r.Header.Get("User-Agent"),
		HasAuthorization: r.Header.Get("Authorization") != "",
		HasCookie:        r.Header.Get("Cookie") != "",
	})
	s.mu.Unlock()
	if s.opts.ESSO == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(s.opts.ESSO)
}

// ESSOProfile returns a conforming Enrollment SSO configuration profile
// (XML): one com.apple.extensiblesso Redirect payload and one
// com.apple.security.root payload. payloads, if given, are appended.
func ESSOProfile(payloads ...string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadType</key><string>Configuration</string>
	<key>PayloadIdentifier</key><string>com.example.esso</string>
	<key>PayloadUUID</key><string>1D2E3F40-5A6B-4C7D-8E9F-A0B1C2D3E4F5</string>
	<key>PayloadVersion</key><integer>1</integer>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadType</key><string>com.apple.extensiblesso</string>
			<key>PayloadIdentifier</key><string>com.example.esso.sso</string>
			<key>PayloadUUID</key><string>9F1B2C3D-4E5F-4A6B-8C7D-0E1F2A3B4C5D</string>
			<key>PayloadVersion</key><integer>1</integer>
			<key>ExtensionIdentifier</key><string>com.example.sso.extension</string>
			<key>Type</key><string>Redirect</string>
			<key>URLs</key><array><string>https://login.example.com/</string></array>
		</dict>
		<dict>
			<key>PayloadType</key><string>com.apple.security.root</string>
			<key>PayloadIdentifier</key><string>com.example.esso.root</string>
			<key>PayloadUUID</key><string>3C0A9E4B-6E2D-4F7B-9A51-0D8E2C7B1F64</string>
			<key>PayloadVersion</key><integer>1</integer>
			<key>PayloadContent</key><data>ZGV2aWNldGVzdA==</data>
		</dict>` + joinPayloads(payloads) + `
	</array>
</dict>
</plist>
`)
}

func joinPayloads(ps []string) string {
	s := ""
	for _, p := range ps {
		s += "\n\t\t" + p
	}
	return s
}

// ESSODeclarations returns the sample's declarations, for editing: a
// com.apple.activation.simple referencing the app and legacy
// configurations, the com.apple.configuration.app.managed of the SSO app
// (AppStoreID, or BundleID in developer mode), an asset and a
// com.apple.configuration.legacy.
func ESSODeclarations(developer bool) []map[string]any {
	app := map[string]any{"AppStoreID": "1234567890"}
	if developer {
		app = map[string]any{"BundleID": "com.example.sso"}
	}
	return []map[string]any{
		{"Type": "com.apple.activation.simple", "Identifier": "com.example.esso.activation", "ServerToken": "1",
			"Payload": map[string]any{"StandardConfigurations": []string{"com.example.esso.app", "com.example.esso.legacy"}}},
		{"Type": "com.apple.configuration.app.managed", "Identifier": "com.example.esso.app", "ServerToken": "1", "Payload": app},
		{"Type": "com.apple.asset.data", "Identifier": "com.example.esso.appconfig", "ServerToken": "1",
			"Payload": map[string]any{"Reference": map[string]any{"DataURL": "https://mdm.example.com/esso/appconfig.plist", "ContentType": "application/plist"}}},
		{"Type": "com.apple.configuration.legacy", "Identifier": "com.example.esso.legacy", "ServerToken": "1",
			"Payload": map[string]any{"ProfileURL": "https://mdm.example.com/esso/sso.mobileconfig"}},
	}
}

// EncodeDeclarations JSON-encodes each declaration and base64s it, as the
// Declarations key carries them.
func EncodeDeclarations(decls []map[string]any) []string {
	out := make([]string, len(decls))
	for i, d := range decls {
		b, err := json.Marshal(d)
		if err != nil {
			panic(err)
		}
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

// ESSOFields returns a conforming Enrollment SSO document as a map, for
// editing: iTunesStoreID (or, in developer mode, AppIDs),
// AssociatedDomains, ConfigurationProfile and Declarations.
func ESSOFields(developer bool) map[string]any {
	m := map[string]any{
		"AssociatedDomains":    []string{"authsrv:login.example.com"},
		"ConfigurationProfile": base64.StdEncoding.EncodeToString(ESSOProfile()),
		"Declarations":         EncodeDeclarations(ESSODeclarations(developer)),
	}
	if developer {
		m["AppIDs"] = []string{ESSOAppID}
	} else {
		m["iTunesStoreID"] = ESSOStoreID
	}
	return m
}

// ESSODocument encodes fields (see ESSOFields) as the document's JSON.
func ESSODocument(fields map[string]any) []byte {
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return b
}
