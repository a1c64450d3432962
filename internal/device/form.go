package device

import (
	"bytes"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// loginForm is a form the emulated user fills in.
type loginForm struct {
	method  string // GET or POST
	action  *url.URL
	enctype string
	fields  [][2]string // name, value; in document order
}

// findLoginForm returns the first form of page that has a password input,
// filled with username and password, or nil.
func findLoginForm(page []byte, pageURL *url.URL, username, password string) (*loginForm, error) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return nil, err
	}
	var form *html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" && hasPasswordInput(n) {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if form == nil {
		return nil, nil
	}
	f := &loginForm{method: "GET", action: pageURL}
	if strings.EqualFold(attr(form, "method"), "post") {
		f.method = "POST"
	}
	if a := strings.TrimSpace(attr(form, "action")); a != "" {
		if f.action, err = pageURL.Parse(a); err != nil {
			return nil, err
		}
	}
	f.enctype = strings.ToLower(attr(form, "enctype"))
	userField := usernameField(form)
	submitted := false
	eachElement(form, func(n *html.Node) {
		name := attr(n, "name")
		switch n.Data {
		case "input":
			typ := inputType(n)
			switch typ {
			case "submit", "image":
				if name != "" && !submitted {
					f.fields = append(f.fields, [2]string{name, attr(n, "value")})
					submitted = true
				}
				return
			case "button", "reset", "file":
				return
			case "checkbox", "radio":
				if name == "" || !hasAttr(n, "checked") {
					return
				}
				v := attr(n, "value")
				if !hasAttr(n, "value") {
					v = "on"
				}
				f.fields = append(f.fields, [2]string{name, v})
				return
			}
			if name == "" || hasAttr(n, "disabled") {
				return
			}
			v := attr(n, "value")
			switch {
			case typ == "password":
				v = password
			case n == userField:
				v = username
			}
			f.fields = append(f.fields, [2]string{name, v})
		case "textarea":
			if name != "" {
				f.fields = append(f.fields, [2]string{name, textOf(n)})
			}
		case "select":
			if name != "" {
				f.fields = append(f.fields, [2]string{name, selectValue(n)})
			}
		case "button":
			t := strings.ToLower(attr(n, "type"))
			if (t == "" || t == "submit") && name != "" && !submitted {
				f.fields = append(f.fields, [2]string{name, attr(n, "value")})
				submitted = true
			}
		}
	})
	return f, nil
}

// encode renders the fields as application/x-www-form-urlencoded.
func (f *loginForm) encode() string {
	parts := make([]string, len(f.fields))
	for i, kv := range f.fields {
		parts[i] = url.QueryEscape(kv[0]) + "=" + url.QueryEscape(kv[1])
	}
	return strings.Join(parts, "&")
}

func hasPasswordInput(form *html.Node) bool {
	found := false
	eachElement(form, func(n *html.Node) {
		if n.Data == "input" && inputType(n) == "password" {
			found = true
		}
	})
	return found
}

// usernameField picks the input that receives the username: one named
// username, email or login, else the first text or email input.
func usernameField(form *html.Node) *html.Node {
	var named, first *html.Node
	eachElement(form, func(n *html.Node) {
		if n.Data != "input" {
			return
		}
		switch strings.ToLower(attr(n, "name")) {
		case "username", "email", "login":
			if named == nil {
				named = n
			}
		}
		if t := inputType(n); first == nil && (t == "text" || t == "email") && attr(n, "name") != "" {
			first = n
		}
	})
	if named != nil {
		return named
	}
	return first
}

func inputType(n *html.Node) string {
	t := strings.ToLower(strings.TrimSpace(attr(n, "type")))
	if t == "" {
		return "text"
	}
	return t
}

func eachElement(root *html.Node, fn func(*html.Node)) {
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			fn(c)
		}
		eachElement(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func textOf(n *html.Node) string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return sb.String()
}

func selectValue(sel *html.Node) string {
	var first, selected *html.Node
	eachElement(sel, func(n *html.Node) {
		if n.Data != "option" {
			return
		}
		if first == nil {
			first = n
		}
		if selected == nil && hasAttr(n, "selected") {
			selected = n
		}
	})
	if selected == nil {
		selected = first
	}
	if selected == nil {
		return ""
	}
	if hasAttr(selected, "value") {
		return attr(selected, "value")
	}
	return strings.TrimSpace(textOf(selected))
}
