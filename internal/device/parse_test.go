package device_test

import (
	"net/http"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
)

func TestParseChallenge(t *testing.T) {
	const web = `Bearer method="apple-as-web", url="https://mdm.example.com/mdmauth/sign-in/FLOW"`
	const oauth = `Bearer method="apple-oauth2", authorization-url="https://idp.example.com/authorize?tenant=1", token-url="https://idp.example.com/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="abc", scope="openid mdm"`
	t.Run("valid", func(t *testing.T) {
		c, err := device.ParseChallenge(http.Header{"Www-Authenticate": {web}})
		if err != nil || c.Method != device.MethodWeb || c.URL != "https://mdm.example.com/mdmauth/sign-in/FLOW" {
			t.Errorf("web = %+v, %v", c, err)
		}
		c, err = device.ParseChallenge(http.Header{"Www-Authenticate": {oauth}})
		if err != nil || c.Method != device.MethodOAuth2 || c.AuthorizationURL != "https://idp.example.com/authorize?tenant=1" ||
			c.TokenURL != "https://idp.example.com/token" || c.ClientID != "abc" || c.Scope != "openid mdm" ||
			c.RedirectURL != "apple-remotemanagement-user-login:/oauth2/redirection" {
			t.Errorf("oauth2 = %+v, %v", c, err)
		}
		// scope is optional to the client.
		if _, err := device.ParseChallenge(http.Header{"Www-Authenticate": {oauth[:len(oauth)-len(`, scope="openid mdm"`)]}}); err != nil {
			t.Errorf("oauth2 without scope: %v", err)
		}
	})
	bad := []struct{ value, want string }{
		{`Bearer method="apple-as-web"`, "challenge without url"},
		{`Bearer url="https://x.example/"`, "challenge without method"},
		{`BEARER method="apple-as-web", url="https://x.example/"`, `case-sensitively`},
		{`Basic realm="x"`, `auth scheme "Basic"`},
		{`Bearer method="apple-as-web",url="https://x.example/"`, `separated by ", "`},
		{`Bearer method="apple-as-web"; url="https://x.example/"`, `separated by ", "`},
		{`Bearer method="apple-as-web", URL="https://x.example/"`, `parameter name "URL" must be lower-case`},
		{`Bearer method="apple-as-web", url="https://x.example/", url="https://y.example/"`, "appears twice"},
		{`Bearer method="apple-as-web", url="https://x.example/\"q"`, "backslash"},
		{`Bearer method="apple-as-web", url="https://x.example/`, "no closing quote"},
		{`Bearer method="apple-as-web", url="/relative"`, "not an absolute URL"},
		{`Bearer method="apple-as-web", url="https://x.example/", realm="mdm"`, `unknown parameter "realm"`},
		{`Bearer method="apple-as-web", url="https://x.example/", Basic realm="x"`, "exactly one challenge"},
		{`Bearer method="apple-as-web", url="https://x.example/", `, `separated by ", "`},
		{`Bearer method="apple-oauth2", authorization-url="https://x.example/a", token-url="https://x.example/t", redirect-url="apple-remotemanagement-user-login:/r"`, "without client-id"},
		{`Bearer method="apple-oauth2", authorization-url="https://x.example/a", token-url="https://x.example/t", client-id="c"`, "without redirect-url"},
		{`Bearer method="apple-oauth2", authorization-url="https://x.example/a", redirect-url="apple-remotemanagement-user-login:/r", client-id="c"`, "without token-url"},
		{`Bearer method="apple-oauth2", authorization-url="https://x.example/a", token-url="https://x.example/t", redirect-url="https://x.example/cb", client-id="c"`, "does not use the apple-remotemanagement-user-login: scheme"},
	}
	for _, tc := range bad {
		t.Run(tc.value, func(t *testing.T) {
			c, err := device.ParseChallenge(http.Header{"Www-Authenticate": {tc.value}})
			if err == nil {
				t.Fatalf("parsed %+v, want an error", c)
			}
			wantDeviation(t, err, tc.want)
		})
	}
}

func TestParseDiscovery(t *testing.T) {
	const good = `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/enroll?org=1"}]}`
	v, u, err := device.ParseDiscovery("application/json; charset=utf-8", []byte(good))
	if err != nil || v != device.VersionADDE || u != "https://mdm.example.com/enroll?org=1" {
		t.Fatalf("ParseDiscovery = %q %q %v", v, u, err)
	}
	bad := []struct{ ct, body, want string }{
		{"application/json", `{"Servers":[]}`, "has 0 entries"},
		{"application/json", `{"Servers":{}}`, "not a JSON array"},
		{"application/json", `{}`, `missing "Servers"`},
		{"application/json", `[]`, "not a JSON object"},
		{"application/json", good + `{}`, "data after the JSON object"},
		{"application/json", `{"Servers":[{"Version":"mdm-byod"}]}`, `needs a string "BaseURL"`},
		{"application/json", `{"Servers":[{"Version":1,"BaseURL":"https://x"}]}`, `needs a string "Version"`},
		{"application/json", `{"Servers":[{"version":"mdm-byod","BaseURL":"https://x"}]}`, `unexpected payload key "version"`},
		{"", good, `Content-Type ""`},
	}
	for _, tc := range bad {
		t.Run(tc.body, func(t *testing.T) {
			_, _, err := device.ParseDiscovery(tc.ct, []byte(tc.body))
			wantDeviation(t, err, tc.want)
		})
	}
}

func TestParseSignInCallback(t *testing.T) {
	tok, err := device.ParseSignInCallback("apple-remotemanagement-user-login://authentication-results?state=1&access-token=a%2Bb+c&access-token=second")
	if err != nil || tok != "a+b+c" {
		t.Errorf("token = %q, %v; want the first access-token, '+' kept", tok, err)
	}
	bad := []struct{ url, want string }{
		{"https://authentication-results/?access-token=x", "does not start with apple-remotemanagement-user-login://"},
		{"Apple-RemoteManagement-User-Login://authentication-results?access-token=x", "does not start with"},
		{"apple-remotemanagement-user-login://authentication-results?access-token=", "without an access-token"},
		{"apple-remotemanagement-user-login://authentication-results?access-token=%zz", "percent-encoded"},
	}
	for _, tc := range bad {
		_, err := device.ParseSignInCallback(tc.url)
		wantDeviation(t, err, tc.want)
	}
}

func TestParseCommand(t *testing.T) {
	if c, err := device.ParseCommand([]byte("  \n")); c != nil || err != nil {
		t.Errorf("empty body = %v, %v; want no command", c, err)
	}
	c, err := device.ParseCommand([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>CommandUUID</key><string>u1</string><key>Command</key><dict><key>RequestType</key><string>DeviceLock</string></dict></dict></plist>`))
	if err != nil || c.UUID != "u1" || c.RequestType != "DeviceLock" {
		t.Errorf("command = %+v, %v", c, err)
	}
	_, err = device.ParseCommand([]byte("bplist00"))
	wantDeviation(t, err, "not an XML property list")
}
