package device

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// snippet returns the readable start of a response body: the text of an
// HTML page (scripts and styles dropped) or the raw text, whitespace
// collapsed, cut to at most n runes.
func snippet(body []byte, n int) string {
	var text string
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '<' {
		text = htmlText(trimmed)
	} else {
		text = string(trimmed)
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "?")
	}
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) > n {
		r := []rune(text)
		text = string(r[:n]) + "…"
	}
	return text
}

func htmlText(b []byte) string {
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		return string(b)
	}
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "style" || n.Data == "head") {
			return
		}
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
			sb.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return sb.String()
}
