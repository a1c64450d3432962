package apple

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// plistGen writes random well-formed plists from the constructs devices and
// hand-written fixtures use, to compare PeekMessage with the plist decoder.
type plistGen struct {
	r    *rand.Rand
	b    strings.Builder
	used map[string]bool
}

var (
	genKeys   = []string{"MessageType", "Status", "CommandUUID", "UDID", "EnrollmentID", "UserID", "EnrollmentUserID", "Model", "ProductName", "Topic", "PushMagic", "Token", "UDID ", "udid", "Other"}
	genTexts  = []string{"", "Authenticate", "00008112-001A2B3C4D5E601E", "a b", " lead", "Mac14,2", "été", "\U0001F600", "a>b", "x]]y", "\t"}
	genRefs   = []string{"&lt;", "&gt;", "&amp;", "&apos;", "&quot;", "&#65;", "&#x41;", "&#xe9;", "&#x1F600;", "&#13;", "&#10;", "&#9;", "&#0065;"}
	genBreaks = []string{"\n", "\r\n", "\r", "\r\r\n"}
	genSpace  = []string{"", " ", "\n\t", "\r\n", "<!-- c -->", "\n<!-- <key>UDID</key> -->\n"}
)

func (g *plistGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// text writes character data mixing plain text, references and line breaks.
func (g *plistGen) text() {
	for n := g.r.IntN(4); n > 0; n-- {
		switch g.r.IntN(3) {
		case 0:
			g.b.WriteString(g.pick(genTexts))
		case 1:
			g.b.WriteString(g.pick(genRefs))
		default:
			g.b.WriteString(g.pick(genBreaks))
		}
	}
}

// key writes a key, sometimes spelled with character references.
func (g *plistGen) key(k string) {
	g.b.WriteString("<key>")
	if g.r.IntN(4) == 0 && k != "" {
		i := g.r.IntN(len(k))
		g.b.WriteString(k[:i])
		g.b.WriteString("&#")
		g.b.WriteString(itoa(int(k[i])))
		g.b.WriteString(";")
		g.b.WriteString(k[i+1:])
	} else {
		g.b.WriteString(k)
	}
	g.b.WriteString("</key>")
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func (g *plistGen) value(depth int) {
	switch n := g.r.IntN(10); {
	case n < 4:
		if g.r.IntN(5) == 0 {
			g.b.WriteString("<string/>")
			return
		}
		g.b.WriteString("<string>")
		g.text()
		g.b.WriteString("</string>")
	case n == 4 && depth < 4:
		g.dict(depth+1, false)
	case n == 5 && depth < 4:
		g.b.WriteString("<array>")
		for i := g.r.IntN(3); i > 0; i-- {
			g.b.WriteString(g.pick(genSpace))
			g.value(depth + 1)
		}
		g.b.WriteString("</array>")
	case n == 6:
		g.b.WriteString("<integer>42</integer>")
	case n == 7:
		g.b.WriteString("<data>\n\tYXBwbGU=\n\t</data>")
	case n == 8:
		g.b.WriteString("<true/>")
	default:
		g.b.WriteString("<false/>")
	}
}

func (g *plistGen) dict(depth int, top bool) {
	g.b.WriteString("<dict>")
	for i := g.r.IntN(8); i > 0; i-- {
		g.b.WriteString(g.pick(genSpace))
		k := g.pick(genKeys)
		if top {
			if g.used[k] {
				continue
			}
			g.used[k] = true
		}
		g.key(k)
		g.b.WriteString(g.pick(genSpace))
		if _, interesting := fieldOf([]byte(k)); top && interesting {
			g.b.WriteString("<string>")
			g.text()
			g.b.WriteString("</string>")
			continue
		}
		g.value(depth)
	}
	g.b.WriteString(g.pick(genSpace))
	g.b.WriteString("</dict>")
}

func (g *plistGen) document() []byte {
	g.b.Reset()
	g.used = map[string]bool{}
	if g.r.IntN(2) == 0 {
		g.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	}
	if g.r.IntN(2) == 0 {
		g.b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	}
	bare := g.r.IntN(5) == 0
	if !bare {
		g.b.WriteString(`<plist version="1.0">`)
		g.b.WriteString(g.pick(genSpace))
	}
	g.dict(1, true)
	if !bare {
		g.b.WriteString(g.pick(genSpace))
		g.b.WriteString("</plist>")
	}
	g.b.WriteString(g.pick(genSpace))
	return []byte(g.b.String())
}

// TestPeekMessageGenerated checks PeekMessage against the plist decoder on
// generated documents that both must accept.
func TestPeekMessageGenerated(t *testing.T) {
	g := &plistGen{r: rand.New(rand.NewPCG(1, 2))}
	decoded := 0
	for i := 0; i < 3000; i++ {
		doc := g.document()
		m, err := PeekMessage(doc)
		if err != nil {
			t.Fatalf("PeekMessage refused %q: %v", doc, err)
		}
		ref, ok := decodeDict(doc)
		if !ok {
			t.Fatalf("plist decoder refused %q", doc)
		}
		if diff := compareWithDict(m, ref); diff != "" {
			t.Fatalf("%s\nin %q", diff, doc)
		}
		if strings.ContainsAny(m.UDID+m.Topic, "<>&\r\n'\"") {
			decoded++
		}
	}
	if decoded < 300 {
		t.Errorf("only %d documents exercised reference or line-break decoding", decoded)
	}
}
