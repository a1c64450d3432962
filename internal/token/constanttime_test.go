package token_test

// A source scan for comparisons of secrets that are not constant-time.
// Token hashes, MACs, tags, signatures, digests, PKCE verifiers and
// challenges and shared secrets must be compared with crypto/subtle or
// hmac.Equal: ==, !=, switch, bytes.Equal and friends stop at the first
// differing byte, and the time they take tells an attacker how much of a
// guess was right.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// scannedPackages are the packages whose non-test files the scan reads,
// relative to this package.
var scannedPackages = []string{".", "../signin", "../gateway", "../webhook", "../admin"}

// secretWords mark a name (variable, field, function, map key) as carrying
// or deriving from a secret.
var secretWords = map[string]bool{
	"hash": true, "hashes": true, "tag": true, "tags": true, "mac": true, "macs": true, "hmac": true,
	"secret": true, "secrets": true, "verifier": true, "challenge": true,
	"signature": true, "signatures": true, "sig": true, "sigs": true, "digest": true, "digests": true,
}

// metaWords, as the last word of a name, describe a secret without carrying
// it: macLen, code_challenge_method, IdPKeyID.
var metaWords = map[string]bool{
	"len": true, "length": true, "size": true, "method": true, "methods": true, "id": true, "ids": true,
	"kid": true, "alg": true, "algs": true, "name": true, "names": true, "type": true, "at": true,
	"count": true, "header": true, "version": true, "supported": true, "enabled": true, "err": true,
	"error": true, "ok": true, "path": true, "url": true, "scheme": true, "prefix": true,
}

// digestFuncs return a digest of their argument.
var digestFuncs = map[string]bool{"Sum": true, "Sum224": true, "Sum256": true, "Sum384": true, "Sum512": true}

// carriers pass a secret argument on: conversions and encodings.
var carriers = map[string]bool{
	"string": true, "EncodeToString": true, "AppendEncode": true, "Bytes": true, "Clone": true,
	"TrimSpace": true, "ToLower": true, "ToUpper": true,
}

// variableTimeFuncs compare their arguments for equality in variable time.
var variableTimeFuncs = map[string]bool{
	"bytes.Equal": true, "bytes.EqualFold": true, "strings.EqualFold": true,
	"reflect.DeepEqual": true, "slices.Equal": true, "maps.Equal": true,
}

// orderingFuncs order their arguments. Sorting by a secret reveals nothing
// to a caller; comparing their result with 0 is an equality test.
var orderingFuncs = map[string]bool{"bytes.Compare": true, "strings.Compare": true, "slices.Compare": true}

// constantTimeFuncs compare in constant time (counted, to show the scan
// sees them).
var constantTimeFuncs = map[string]bool{
	"hmac.Equal": true, "subtle.ConstantTimeCompare": true, "subtle.ConstantTimeEq": true,
	"subtle.ConstantTimeByteEq": true, "subtle.XORBytes": true,
}

// words splits an identifier into its camel-case and snake-case words:
// TokenHash → Token Hash, HMACKey → HMAC Key, code_challenge → code
// challenge.
func words(name string) []string {
	var out []string
	rs := []rune(name)
	start := 0
	flush := func(end int) {
		if end > start {
			out = append(out, string(rs[start:end]))
		}
	}
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '_' || r == '-' || r == ' ' || r == '.':
			flush(i)
			start = i + 1
		case i > start && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])):
			flush(i)
			start = i
		case i > start && unicode.IsUpper(r) && unicode.IsUpper(rs[i-1]) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
			flush(i)
			start = i
		}
	}
	flush(len(rs))
	return out
}

// secretName reports whether a name carries a secret. "mac" counts only as
// MAC or in lower case (mac, macKey): Mac is the computer (PlatformMac,
// IsMacModel).
func secretName(name string) bool {
	ws := words(name)
	if len(ws) == 0 || metaWords[strings.ToLower(ws[len(ws)-1])] {
		return false
	}
	for _, w := range ws {
		lw := strings.ToLower(w)
		if (lw == "mac" || lw == "macs") && w != strings.ToUpper(w) && w != lw {
			continue
		}
		if secretWords[lw] {
			return true
		}
	}
	return false
}

// secretType reports whether a type expression names a secret-carrying
// type (store.Hash, a MAC type).
func secretType(e ast.Expr) bool {
	switch t := e.(type) {
	case *ast.Ident:
		return secretName(t.Name)
	case *ast.SelectorExpr:
		return secretName(t.Sel.Name)
	case *ast.StarExpr:
		return secretType(t.X)
	case *ast.ArrayType:
		return false
	}
	return false
}

// finding is one variable-time comparison of a secret.
type finding struct {
	pos  token.Position
	expr string
}

func (f finding) String() string { return fmt.Sprintf("%s: %s", f.pos, f.expr) }

// scanner finds the variable-time comparisons of secrets in a file.
type scanner struct {
	fset     *token.FileSet
	src      []byte
	findings []finding
	// compared counts every ==, != and comparison call looked at, to
	// show the scan saw the code.
	compared int
}

func (s *scanner) text(n ast.Node) string {
	return string(s.src[s.fset.Position(n.Pos()).Offset:s.fset.Position(n.End()).Offset])
}

func (s *scanner) report(n ast.Node) {
	s.findings = append(s.findings, finding{s.fset.Position(n.Pos()), s.text(n)})
}

// fn holds the names a function body marks as secret.
type fn struct {
	s       *scanner
	secrets map[string]bool
}

// secret reports whether e carries a secret.
func (f *fn) secret(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return f.secret(x.X)
	case *ast.StarExpr:
		return f.secret(x.X)
	case *ast.UnaryExpr:
		return f.secret(x.X)
	case *ast.SliceExpr:
		return f.secret(x.X)
	case *ast.IndexExpr:
		if lit, ok := x.Index.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			return secretName(strings.Trim(lit.Value, "\"`"))
		}
		return f.secret(x.X)
	case *ast.Ident:
		return f.secrets[x.Name] || secretName(x.Name)
	case *ast.SelectorExpr:
		return secretName(x.Sel.Name)
	case *ast.CallExpr:
		name := calleeName(x.Fun)
		if _, conv := x.Fun.(*ast.ArrayType); conv || carriers[name] {
			for _, a := range x.Args {
				if f.secret(a) {
					return true
				}
			}
			return false
		}
		return digestFuncs[name] || secretName(name)
	case *ast.CompositeLit:
		return secretType(x.Type) && len(x.Elts) > 0
	}
	return false
}

// calleeName is the name of the function a call expression calls.
func calleeName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.IndexExpr: // generic instantiation
		return calleeName(x.X)
	}
	return ""
}

// qualifiedName is pkg.Func for a call of a package function.
func qualifiedName(e ast.Expr) string {
	if sel, ok := e.(*ast.SelectorExpr); ok {
		if id, ok := sel.X.(*ast.Ident); ok {
			return id.Name + "." + sel.Sel.Name
		}
	}
	return ""
}

// constLike reports whether e is a constant or a zero value: comparing a
// secret with one reveals only whether it is set.
func constLike(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return constLike(x.X)
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return x.Name == "nil" || x.Name == "true" || x.Name == "false"
	case *ast.CompositeLit:
		return len(x.Elts) == 0
	case *ast.CallExpr:
		n := calleeName(x.Fun)
		return n == "len" || n == "cap"
	}
	return false
}

// mark records the names declared or assigned from secrets in body, until
// nothing changes.
func (f *fn) mark(body ast.Node) {
	for changed := true; changed; {
		changed = false
		set := func(id *ast.Ident) {
			if id != nil && id.Name != "_" && !f.secrets[id.Name] {
				f.secrets[id.Name] = true
				changed = true
			}
		}
		ast.Inspect(body, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.Field:
				if secretType(x.Type) {
					for _, id := range x.Names {
						set(id)
					}
				}
			case *ast.ValueSpec:
				for i, id := range x.Names {
					if (x.Type != nil && secretType(x.Type)) || (i < len(x.Values) && f.secret(x.Values[i])) {
						set(id)
					}
				}
			case *ast.AssignStmt:
				if len(x.Lhs) == len(x.Rhs) {
					for i, l := range x.Lhs {
						if id, ok := l.(*ast.Ident); ok && f.secret(x.Rhs[i]) {
							set(id)
						}
					}
				}
			case *ast.RangeStmt:
				if f.secret(x.X) {
					if id, ok := x.Value.(*ast.Ident); ok {
						set(id)
					}
				}
			}
			return true
		})
	}
}

// check reports the variable-time comparisons of secrets in body.
func (f *fn) check(body ast.Node) {
	ast.Inspect(body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.BinaryExpr:
			if x.Op != token.EQL && x.Op != token.NEQ {
				return true
			}
			f.s.compared++
			if call, zero := orderingCall(x); zero {
				if f.anySecret(call.Args) {
					f.s.report(x)
				}
				return true
			}
			if (f.secret(x.X) || f.secret(x.Y)) && !constLike(x.X) && !constLike(x.Y) {
				f.s.report(x)
			}
		case *ast.CallExpr:
			if constantTimeFuncs[qualifiedName(x.Fun)] {
				f.s.compared++
				return true
			}
			if !variableTimeFuncs[qualifiedName(x.Fun)] {
				return true
			}
			f.s.compared++
			secret, consts := false, false
			for _, a := range x.Args {
				secret = secret || f.secret(a)
				consts = consts || constLike(a)
			}
			if secret && !consts {
				f.s.report(x)
			}
		case *ast.SwitchStmt:
			if x.Tag == nil {
				return true
			}
			secret := f.secret(x.Tag)
			for _, st := range x.Body.List {
				for _, v := range st.(*ast.CaseClause).List {
					f.s.compared++
					if secret && !constLike(v) || !constLike(x.Tag) && f.secret(v) && !constLike(v) {
						f.s.report(v)
					}
				}
			}
		}
		return true
	})
}

// anySecret reports whether one of args carries a secret.
func (f *fn) anySecret(args []ast.Expr) bool {
	for _, a := range args {
		if f.secret(a) {
			return true
		}
	}
	return false
}

// orderingCall returns the ordering call of x when x compares its result
// with 0 (an equality test).
func orderingCall(x *ast.BinaryExpr) (*ast.CallExpr, bool) {
	for _, pair := range [][2]ast.Expr{{x.X, x.Y}, {x.Y, x.X}} {
		call, ok := pair[0].(*ast.CallExpr)
		lit, isLit := pair[1].(*ast.BasicLit)
		if ok && orderingFuncs[qualifiedName(call.Fun)] && isLit && lit.Value == "0" {
			return call, true
		}
	}
	return nil, false
}

// scanFile scans one parsed file.
func (s *scanner) scanFile(file *ast.File) {
	for _, d := range file.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		f := &fn{s: s, secrets: map[string]bool{}}
		f.mark(fd) // parameters, results, receiver and the body
		if fd.Body != nil {
			f.check(fd.Body)
		}
	}
}

// scanSource scans Go source text.
func scanSource(name string, src []byte) (*scanner, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	s := &scanner{fset: fset, src: src}
	s.scanFile(file)
	return s, nil
}

// The scanner finds each kind of variable-time comparison of a secret, and
// leaves alone constant-time comparisons, comparisons with constants and
// zero values, and names that only look like secrets.
func TestConstantTimeScannerDetects(t *testing.T) {
	bad := map[string]string{
		"tag ==":                    `func f(tag, want []byte) bool { return string(tag) == string(want) }`,
		"field !=":                  `func f(fam *Family, h Hash) bool { return fam.RefreshHash != h }`,
		"typed local":               `func f(raw string, e *Enrollment) bool { var h store.Hash = HashOf(raw); return e.Current == h }`,
		"assigned from HashOf":      `func f(raw string, x [32]byte) bool { h := HashOf(raw); return h == x }`,
		"assigned from Sum256":      `func f(raw, x []byte) bool { d := sha256.Sum256(raw); return d == [32]byte(x) }`,
		"typed parameter":           `func f(a, b store.Hash) bool { return a == b }`,
		"MAC call":                  `func f(s Signer, p string, got string) bool { return got == string(s.mac(p)) }`,
		"bytes.Equal":               `func f(mac, expected []byte) bool { return bytes.Equal(mac, expected) }`,
		"reflect.DeepEqual":         `func f(digest, x []byte) bool { return reflect.DeepEqual(digest, x) }`,
		"strings.EqualFold":         `func f(secret, typed string) bool { return strings.EqualFold(secret, typed) }`,
		"PKCE challenge":            `func f(c *Code, got string) bool { return got != c.CodeChallenge }`,
		"PKCE verifier":             `func f(verifier, v string) bool { return verifier == v }`,
		"map key":                   `func f(q map[string]string, want string) bool { return q["client_secret"] == want }`,
		"signature in a loop":       `func f(sigs [][]byte, want string) bool { for _, s := range sigs { if string(s) == want { return true } }; return false }`,
		"encoded":                   `func f(sig []byte, hdr string) bool { return hex.EncodeToString(sig) == hdr }`,
		"switch":                    `func f(tag string, a, b string) int { switch tag { case a: return 1; case b: return 2 }; return 0 }`,
		"MAC acronym":               `func f(HMAC, x []byte) bool { return bytes.Equal(HMAC, x) }`,
		"closure":                   `func f(h Hash) func(Hash) bool { return func(x Hash) bool { return x == h } }`,
		"webhook signature":         `func f(signature string, r *http.Request) bool { return r.Header.Get("X") == signature }`,
		"digest of the presented":   `func f(presented string, stored [32]byte) bool { return sha256.Sum256([]byte(presented)) == stored }`,
		"slices.Equal of verifiers": `func f(a, verifier []byte) bool { return slices.Equal(a, verifier) }`,
		"Compare result zero":       `func f(mac, x []byte) bool { return bytes.Compare(mac, x) == 0 }`,
		"secret as a case":          `func f(x string, secret string) int { switch x { case secret: return 1 }; return 0 }`,
	}
	good := map[string]string{
		"hmac.Equal":           `func f(tag, want []byte) bool { return hmac.Equal(tag, want) }`,
		"subtle":               `func f(a, b store.Hash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }`,
		"zero hash":            `func f(e *Enrollment) bool { return e.TokenHash != (store.Hash{}) }`,
		"typed zero":           `func f(previous store.Hash) bool { return previous != store.Hash{} }`,
		"empty verifier":       `func f(verifier string) bool { return verifier == "" }`,
		"nil verifier":         `func f(c *Config) bool { return c.Verifier != nil }`,
		"length":               `func f(mac []byte) bool { return len(mac) != macLen }`,
		"length constant":      `func f(got []byte) bool { return len(got) == macLen }`,
		"Mac the computer":     `func f(e *Enrollment) bool { return e.Platform == store.PlatformMac }`,
		"Mac model":            `func f(product string) bool { return IsMacModel(product) == true }`,
		"family Mac":           `func f(family string) bool { return family != "Mac" }`,
		"challenge method":     `func f(q map[string]string) bool { return q["code_challenge_method"] != "S256" }`,
		"hash id":              `func f(t *Token, id string) bool { return t.Hash.ID() == id }`,
		"key id":               `func f(f *Family, kid string) bool { return f.IdPKeyID == kid }`,
		"hash type name":       `func f(alg string) bool { return alg == hashAlg }`,
		"signature method":     `func f(m string, sigMethod string) bool { return m == sigMethod }`,
		"ordinary values":      `func f(e *Enrollment, id string) bool { return e.ID == id && e.State != StateRemoved }`,
		"ordinary bytes":       `func f(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }`,
		"secret set at all":    `func f(secret []byte) bool { return secret == nil }`,
		"switch on a header":   `func f(k string) int { switch k { case "t": return 1; case "v1": return 2 }; return 0 }`,
		"sorting by hash":      `func f(a, b *Token) int { return bytes.Compare(a.Hash[:], b.Hash[:]) }`,
		"paging by hash":       `func f(t *Token, from []byte) bool { return bytes.Compare(t.Hash[:], from) < 0 }`,
		"constant-time helper": `func f(e *Enrollment, h store.Hash) bool { return SameHash(e.TokenHash, h) }`,
	}
	for name, body := range bad {
		s, err := scanSource(name+".go", []byte("package p\n\n"+body+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(s.findings) == 0 {
			t.Errorf("%s: not detected: %s", name, body)
		}
	}
	for name, body := range good {
		s, err := scanSource(name+".go", []byte("package p\n\n"+body+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(s.findings) != 0 {
			t.Errorf("%s: false findings %v: %s", name, s.findings, body)
		}
	}
}

// No secret is compared in variable time in the packages that handle
// tokens, codes, MACs, signatures and shared secrets.
func TestConstantTimeComparisons(t *testing.T) {
	var all []finding
	files, compared := 0, 0
	for _, dir := range scannedPackages {
		paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			s, err := scanSource(p, src)
			if err != nil {
				t.Fatal(err)
			}
			files++
			compared += s.compared
			all = append(all, s.findings...)
		}
	}
	// The scan must have read the packages it names.
	if files < 20 || compared < 100 {
		t.Fatalf("scanned %d files and %d comparisons: the scan does not see the code", files, compared)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].String() < all[j].String() })
	for _, f := range all {
		t.Errorf("variable-time comparison of a secret (use crypto/subtle or hmac.Equal): %s", f)
	}
}
