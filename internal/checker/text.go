package checker

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report for people: what was asked and found, one
// line per finding ("✗ step: problem → fix" for what makes a device fail,
// "! …" for warnings) and the verdict.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-10s %s\n", label, value)
		}
	}
	line("discovery", r.DiscoveryURL)
	for _, u := range r.Redirects {
		line("redirect", u)
	}
	line("version", r.Version)
	line("base URL", r.BaseURL)
	line("challenge", r.Method)
	line("esso", r.ESSOURL)
	if len(r.Findings) > 0 {
		b.WriteByte('\n')
	}
	for _, f := range r.Findings {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	problems, warnings := len(r.Fatal()), len(r.Warnings())
	if r.OK {
		fmt.Fprintf(&b, "OK: a device gets through discovery and the first enrollment request%s\n", count(warnings, "warning", ", "))
	} else {
		fmt.Fprintf(&b, "FAIL: a device would not enroll%s%s\n", count(problems, "problem", ": "), count(warnings, "warning", ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// count renders n things after sep ("" for none).
func count(n int, what, sep string) string {
	switch n {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("%s1 %s", sep, what)
	}
	return fmt.Sprintf("%s%d %ss", sep, n, what)
}
