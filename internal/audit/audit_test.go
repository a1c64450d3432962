package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestFields(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("User-Agent", strings.Repeat("u", 300))

	log.Info("m", Fields(TokenIssued, r, nil)...)
	log.Info("m", Fields(TokenBound, r, func(*http.Request) string { return "198.51.100.9" })...)
	log.Info("m", Fields(IdPRevalidated, nil, nil)...)

	e := logs.All()
	if len(e) != 3 {
		t.Fatalf("%d entries", len(e))
	}
	m0, m1, m2 := e[0].ContextMap(), e[1].ContextMap(), e[2].ContextMap()
	if m0["event"] != TokenIssued || m0["client_ip"] != "192.0.2.7" || len(m0["user_agent"].(string)) != 256 {
		t.Errorf("remote address fallback and user agent bound: %v", m0)
	}
	if m1["event"] != TokenBound || m1["client_ip"] != "198.51.100.9" {
		t.Errorf("client address function: %v", m1)
	}
	if _, ok := m2["client_ip"]; ok || m2["event"] != IdPRevalidated || len(m2) != 1 {
		t.Errorf("without a request: %v", m2)
	}
}

// Every event name is documented in docs/audit-events.md.
func TestEventsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-events.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "audit.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		spec, ok := node.(*ast.ValueSpec)
		if !ok || len(spec.Values) != 1 {
			return true
		}
		lit, ok := spec.Values[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		n++
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("event %s is not in the table of docs/audit-events.md", name)
		}
		if !strings.Contains(string(doc), `"event":"`+name+`"`) {
			t.Errorf("event %s has no example in docs/audit-events.md", name)
		}
		return true
	})
	if n < 20 {
		t.Fatalf("found only %d event names", n)
	}
}
