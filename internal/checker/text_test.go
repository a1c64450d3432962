package checker

import (
	"strings"
	"testing"
)

func TestWriteText(t *testing.T) {
	ok := Report{OK: true, DiscoveryURL: "https://example.com/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=iPhone",
		Redirects: []string{"https://mdm.example.com/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=iPhone"},
		Version:   "mdm-byod", BaseURL: "https://mdm.example.com/mdmauth/enroll/byod", Method: "apple-as-web",
		Findings: []Finding{{Step: StepTLS, Problem: "the certificate of mdm.example.com expires soon", Fix: "renew it"}}}
	var b strings.Builder
	if err := ok.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `discovery  https://example.com/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=iPhone
redirect   https://mdm.example.com/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=iPhone
version    mdm-byod
base URL   https://mdm.example.com/mdmauth/enroll/byod
challenge  apple-as-web

! tls: the certificate of mdm.example.com expires soon → renew it

OK: a device gets through discovery and the first enrollment request, 1 warning
`
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}

	bad := Report{DiscoveryURL: "https://example.com/x", Findings: []Finding{
		{Step: StepDiscovery, Problem: "p1", Fix: "f1", Fatal: true},
		{Step: StepDiscovery, Problem: "p2", Fix: "f2", Fatal: true},
		{Step: StepDiscovery, Problem: "w", Fix: "f3"},
	}}
	b.Reset()
	if err := bad.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want = `discovery  https://example.com/x

✗ discovery: p1 → f1
✗ discovery: p2 → f2
! discovery: w → f3

FAIL: a device would not enroll: 2 problems, 1 warning
`
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
	if len(bad.Fatal()) != 2 || len(bad.Warnings()) != 1 {
		t.Errorf("Fatal %v, Warnings %v", bad.Fatal(), bad.Warnings())
	}
}
