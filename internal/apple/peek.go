package apple

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxPlistDepth bounds the nesting of dict and array elements PeekMessage
// walks through; the root dict is depth 1.
const maxPlistDepth = 64

// field indexes the Message values PeekMessage collects.
type field uint8

const (
	fMessageType field = iota
	fStatus
	fCommandUUID
	fUDID
	fEnrollmentID
	fUserID
	fEnrollmentUserID
	fModel
	fProductName
	fTopic
	numFields
)

// fieldOf maps a top-level key to the Message field it fills.
func fieldOf(key []byte) (field, bool) {
	switch string(key) {
	case "MessageType":
		return fMessageType, true
	case "Status":
		return fStatus, true
	case "CommandUUID":
		return fCommandUUID, true
	case "UDID":
		return fUDID, true
	case "EnrollmentID":
		return fEnrollmentID, true
	case "UserID":
		return fUserID, true
	case "EnrollmentUserID":
		return fEnrollmentUserID, true
	case "Model":
		return fModel, true
	case "ProductName":
		return fProductName, true
	case "Topic":
		return fTopic, true
	}
	return 0, false
}

// span locates the raw text of a collected <string> value in the body.
type span struct {
	start, end int
	seen       bool // the key was present
	decode     bool // the text holds references or carriage returns
}

// scanner walks an XML plist without building a tree.
type scanner struct {
	b     []byte
	i     int
	spans [numFields]span
}

// PeekMessage reads the top-level string values of the keys in Message from
// an XML plist whose root is a dict, in one pass and without building a
// tree. Values of other keys, including nested dicts and arrays (up to 64
// levels), are checked for structure and skipped, so keys inside nested
// values never fill a Message field.
//
// The accepted XML is what Apple devices produce: an optional XML
// declaration, DOCTYPE (without internal subset), comments and whitespace
// around elements; <string> text with the five predefined entities and
// numeric character references; attributes on <plist> only. CDATA sections,
// markup inside text, unknown elements, a key of interest that is repeated
// or holds a non-string value, and anything after the root element other
// than whitespace, comments and processing instructions are refused.
//
// Any input that is not such a plist (binary plist, JSON, array root,
// truncated or malformed XML) yields a *MalformedError.
func PeekMessage(body []byte) (Message, error) {
	s := scanner{b: body}
	if err := s.document(); err != nil {
		return Message{}, err
	}
	return s.message(), nil
}

// message builds the Message from the recorded spans with one allocation
// shared by all values.
func (s *scanner) message() Message {
	total := 0
	for _, sp := range s.spans {
		total += sp.end - sp.start
	}
	if total == 0 {
		return Message{}
	}
	var w strings.Builder
	w.Grow(total)
	var offs [numFields + 1]int
	for f, sp := range s.spans {
		offs[f] = w.Len()
		raw := s.b[sp.start:sp.end]
		if !sp.decode {
			w.Write(raw)
			continue
		}
		var tmp [128]byte
		w.Write(appendText(tmp[:0], raw))
	}
	offs[numFields] = w.Len()
	all := w.String()
	v := func(f field) string { return all[offs[f]:offs[f+1]] }
	return Message{
		MessageType:      v(fMessageType),
		Status:           v(fStatus),
		CommandUUID:      v(fCommandUUID),
		UDID:             v(fUDID),
		EnrollmentID:     v(fEnrollmentID),
		UserID:           v(fUserID),
		EnrollmentUserID: v(fEnrollmentUserID),
		Model:            v(fModel),
		ProductName:      v(fProductName),
		Topic:            v(fTopic),
	}
}

// fail returns a *MalformedError naming the offset of the problem.
func (s *scanner) fail(reason string) error {
	return &MalformedError{Reason: reason + " at offset " + strconv.Itoa(s.i)}
}

func (s *scanner) hasPrefix(p string) bool {
	return len(s.b)-s.i >= len(p) && string(s.b[s.i:s.i+len(p)]) == p
}

// document parses prolog, root element and epilog.
func (s *scanner) document() error {
	if bytes.HasPrefix(s.b, []byte("bplist")) {
		return &MalformedError{Reason: "binary plist"}
	}
	if s.hasPrefix("\xef\xbb\xbf") {
		s.i += 3
	}
	if err := s.skipMisc(true); err != nil {
		return err
	}
	if s.hasPrefix("<!DOCTYPE") {
		if err := s.skipDoctype(); err != nil {
			return err
		}
		if err := s.skipMisc(true); err != nil {
			return err
		}
	}
	if s.i >= len(s.b) || s.b[s.i] != '<' {
		return s.fail("not an XML plist")
	}
	name, empty, err := s.openTag()
	if err != nil {
		return err
	}
	switch string(name) {
	case "plist":
		if empty {
			return s.fail("empty plist element")
		}
		if err := s.skipMisc(false); err != nil {
			return err
		}
		if err := s.rootDict(); err != nil {
			return err
		}
		if err := s.skipMisc(false); err != nil {
			return err
		}
		if err := s.closeTag("plist"); err != nil {
			return err
		}
	case "dict":
		if !empty {
			if err := s.dict(1, true); err != nil {
				return err
			}
		}
	default:
		return s.fail("root element is not a plist or dict")
	}
	if err := s.skipMisc(true); err != nil {
		return err
	}
	if s.i != len(s.b) {
		return s.fail("data after the root element")
	}
	return nil
}

// rootDict parses the single dict inside <plist>.
func (s *scanner) rootDict() error {
	name, empty, err := s.openTag()
	if err != nil {
		return err
	}
	if string(name) != "dict" {
		return s.fail("plist root is not a dict")
	}
	if empty {
		return nil
	}
	return s.dict(1, true)
}

// dict parses the content and end tag of a dict whose start tag was just
// read. Only the root dict (top) records values.
func (s *scanner) dict(depth int, top bool) error {
	if depth > maxPlistDepth {
		return s.fail("plist nested too deeply")
	}
	for {
		if err := s.skipMisc(false); err != nil {
			return err
		}
		if s.hasPrefix("</") {
			return s.closeTag("dict")
		}
		name, empty, err := s.openTag()
		if err != nil {
			return err
		}
		if string(name) != "key" {
			return s.fail("dict entry does not start with a key")
		}
		keyStart, keyEnd := s.i, s.i
		if !empty {
			if keyEnd, err = s.text(); err != nil {
				return err
			}
			if err := s.closeTag("key"); err != nil {
				return err
			}
		}
		f, interesting := field(0), false
		if top {
			if f, interesting, err = s.lookupKey(s.b[keyStart:keyEnd]); err != nil {
				return err
			}
		}
		if err := s.skipMisc(false); err != nil {
			return err
		}
		if s.hasPrefix("</") {
			return s.fail("dict key without a value")
		}
		vname, vempty, err := s.openTag()
		if err != nil {
			return err
		}
		if !interesting {
			if err := s.skipValue(vname, vempty, depth); err != nil {
				return err
			}
			continue
		}
		if string(vname) != "string" {
			return s.fail("non-string value for a message key")
		}
		if s.spans[f].seen {
			return s.fail("repeated message key")
		}
		sp := span{start: s.i, end: s.i, seen: true}
		if !vempty {
			if sp.end, err = s.text(); err != nil {
				return err
			}
			if sp.decode, err = checkText(s.b[sp.start:sp.end]); err != nil {
				s.i = sp.start
				return s.fail(err.Error())
			}
			if err := s.closeTag("string"); err != nil {
				return err
			}
		}
		s.spans[f] = sp
	}
}

// lookupKey maps a raw top-level key text to a Message field.
func (s *scanner) lookupKey(raw []byte) (field, bool, error) {
	if bytes.IndexByte(raw, '&') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		f, ok := fieldOf(raw)
		return f, ok, nil
	}
	if _, err := checkText(raw); err != nil {
		return 0, false, s.fail("key: " + err.Error())
	}
	var tmp [32]byte
	f, ok := fieldOf(appendText(tmp[:0], raw))
	return f, ok, nil
}

// array parses the content and end tag of an array whose start tag was just
// read.
func (s *scanner) array(depth int) error {
	if depth > maxPlistDepth {
		return s.fail("plist nested too deeply")
	}
	for {
		if err := s.skipMisc(false); err != nil {
			return err
		}
		if s.hasPrefix("</") {
			return s.closeTag("array")
		}
		name, empty, err := s.openTag()
		if err != nil {
			return err
		}
		if err := s.skipValue(name, empty, depth); err != nil {
			return err
		}
	}
}

// skipValue skips a value whose start tag (name, empty) was just read, at
// nesting depth of the enclosing container.
func (s *scanner) skipValue(name []byte, empty bool, depth int) error {
	switch string(name) {
	case "dict":
		if empty {
			return nil
		}
		return s.dict(depth+1, false)
	case "array":
		if empty {
			return nil
		}
		return s.array(depth + 1)
	case "string", "data":
		if empty {
			return nil
		}
	case "integer", "real", "date":
		if empty {
			return s.fail("empty " + string(name))
		}
	case "true", "false":
		if empty {
			return nil
		}
		return s.closeTag(string(name))
	default:
		return s.fail("unknown plist element")
	}
	if _, err := s.text(); err != nil {
		return err
	}
	return s.closeTag(string(name))
}

// text advances to the next '<' and returns its offset: the end of the text
// content that started at s.i.
func (s *scanner) text() (int, error) {
	j := bytes.IndexByte(s.b[s.i:], '<')
	if j < 0 {
		s.i = len(s.b)
		return 0, s.fail("unexpected end of input")
	}
	s.i += j
	return s.i, nil
}

// openTag reads a start tag `<name>` or `<name/>`. Attributes are allowed
// on <plist> only.
func (s *scanner) openTag() (name []byte, empty bool, err error) {
	if s.i >= len(s.b) {
		return nil, false, s.fail("unexpected end of input")
	}
	if s.b[s.i] != '<' {
		return nil, false, s.fail("text where an element was expected")
	}
	start := s.i + 1
	j := start
	for j < len(s.b) && isNameByte(s.b[j]) {
		j++
	}
	if j == start {
		return nil, false, s.fail("markup where an element was expected")
	}
	name = s.b[start:j]
	s.i = j
	if string(name) == "plist" {
		if err := s.skipAttrs(); err != nil {
			return nil, false, err
		}
	}
	s.skipSpace()
	switch {
	case s.hasPrefix("/>"):
		s.i += 2
		return name, true, nil
	case s.hasPrefix(">"):
		s.i++
		return name, false, nil
	}
	return nil, false, s.fail("malformed start tag")
}

// closeTag reads the end tag `</name>`, allowing whitespace before '>'.
func (s *scanner) closeTag(name string) error {
	if !s.hasPrefix("</") {
		return s.fail("markup inside text or missing end tag")
	}
	s.i += 2
	if !s.hasPrefix(name) {
		return s.fail("mismatched end tag")
	}
	s.i += len(name)
	s.skipSpace()
	if !s.hasPrefix(">") {
		return s.fail("mismatched end tag")
	}
	s.i++
	return nil
}

// skipAttrs skips the attributes of a start tag, stopping before '>' or '/>'.
func (s *scanner) skipAttrs() error {
	for {
		n := s.skipSpace()
		if s.i >= len(s.b) {
			return s.fail("unexpected end of input")
		}
		if c := s.b[s.i]; c == '>' || c == '/' {
			return nil
		}
		if n == 0 {
			return s.fail("malformed attribute")
		}
		start := s.i
		for s.i < len(s.b) && isNameByte(s.b[s.i]) {
			s.i++
		}
		if s.i == start {
			return s.fail("malformed attribute")
		}
		s.skipSpace()
		if !s.hasPrefix("=") {
			return s.fail("malformed attribute")
		}
		s.i++
		s.skipSpace()
		if s.i >= len(s.b) || (s.b[s.i] != '"' && s.b[s.i] != '\'') {
			return s.fail("unquoted attribute value")
		}
		q := s.b[s.i]
		s.i++
		end := bytes.IndexByte(s.b[s.i:], q)
		if end < 0 {
			return s.fail("unterminated attribute value")
		}
		if bytes.IndexByte(s.b[s.i:s.i+end], '<') >= 0 {
			return s.fail("'<' in attribute value")
		}
		s.i += end + 1
	}
}

// skipMisc skips whitespace and comments, and processing instructions when
// pi is set (outside the root element).
func (s *scanner) skipMisc(pi bool) error {
	for {
		s.skipSpace()
		switch {
		case s.hasPrefix("<!--"):
			end := bytes.Index(s.b[s.i+4:], []byte("-->"))
			if end < 0 {
				return s.fail("unterminated comment")
			}
			s.i += 4 + end + 3
		case pi && s.hasPrefix("<?"):
			end := bytes.Index(s.b[s.i+2:], []byte("?>"))
			if end < 0 {
				return s.fail("unterminated processing instruction")
			}
			s.i += 2 + end + 2
		default:
			return nil
		}
	}
}

// skipDoctype skips a DOCTYPE declaration without internal subset.
func (s *scanner) skipDoctype() error {
	for s.i += len("<!DOCTYPE"); s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case '"', '\'':
			end := bytes.IndexByte(s.b[s.i+1:], c)
			if end < 0 {
				return s.fail("unterminated DOCTYPE literal")
			}
			s.i += end + 1
		case '[':
			return s.fail("DOCTYPE internal subset")
		case '<':
			return s.fail("malformed DOCTYPE")
		case '>':
			s.i++
			return nil
		}
	}
	return s.fail("unterminated DOCTYPE")
}

// skipSpace skips XML whitespace and returns how many bytes it skipped.
func (s *scanner) skipSpace() int {
	b, i := s.b, s.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	n := i - s.i
	s.i = i
	return n
}

// isNameByte reports whether c may appear in an element or attribute name.
// Non-ASCII names are not used by plists and are refused.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == ':'
}

// textError is a static reason for bad character data.
type textError string

func (e textError) Error() string { return string(e) }

// checkText validates raw character data: valid UTF-8, XML characters only,
// well-formed references. decode reports whether appendText must rewrite it.
func checkText(raw []byte) (decode bool, err error) {
	for k := 0; k < len(raw); {
		c := raw[k]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' {
			k++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(raw[k:])
			if r == utf8.RuneError && size == 1 {
				return false, textError("invalid UTF-8")
			}
			if !isXMLChar(r) {
				return false, textError("character not allowed in XML")
			}
			k += size
			continue
		}
		switch {
		case c == '&':
			n, _ := parseRef(raw[k:])
			if n == 0 {
				return false, textError("bad character or entity reference")
			}
			decode = true
			k += n
			continue
		case c == '\r':
			decode = true
		case c < 0x20 && c != '\t' && c != '\n':
			return false, textError("control character")
		}
		k++
	}
	return decode, nil
}

// appendText appends the decoded form of raw, already validated by
// checkText, to dst: references are replaced and line ends normalized to
// '\n' the way encoding/xml does.
func appendText(dst, raw []byte) []byte {
	for k := 0; k < len(raw); {
		switch raw[k] {
		case '&':
			n, r := parseRef(raw[k:])
			if n == 0 {
				return dst // unreachable after checkText
			}
			dst = utf8.AppendRune(dst, r)
			k += n
		case '\r':
			dst = append(dst, '\n')
			k++
			if k < len(raw) && raw[k] == '\n' {
				k++
			}
		default:
			j := k + 1
			for j < len(raw) && raw[j] != '&' && raw[j] != '\r' {
				j++
			}
			dst = append(dst, raw[k:j]...)
			k = j
		}
	}
	return dst
}

// parseRef parses the reference at the start of s (s[0] == '&'): one of the
// five predefined entities or a numeric character reference naming an XML
// character. It returns the length of the reference and the character, or
// n == 0 when the reference is not well-formed.
func parseRef(s []byte) (n int, r rune) {
	for _, e := range predefinedEntities {
		if len(s) >= len(e.ref) && string(s[:len(e.ref)]) == e.ref {
			return len(e.ref), e.r
		}
	}
	if len(s) < 4 || s[1] != '#' {
		return 0, 0
	}
	k, base := 2, rune(10)
	if s[2] == 'x' {
		k, base = 3, 16
	}
	start := k
	var v rune
	for ; k < len(s); k++ {
		d := digitVal(s[k], base)
		if d < 0 {
			break
		}
		v = v*base + d
		if v > utf8.MaxRune {
			return 0, 0
		}
	}
	if k == start || k >= len(s) || s[k] != ';' || !isXMLChar(v) {
		return 0, 0
	}
	return k + 1, v
}

var predefinedEntities = [...]struct {
	ref string
	r   rune
}{
	{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&apos;", '\''}, {"&quot;", '"'},
}

// digitVal returns the value of c as a digit in base 10 or 16, or -1.
func digitVal(c byte, base rune) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case base == 16 && 'a' <= c && c <= 'f':
		return rune(c-'a') + 10
	case base == 16 && 'A' <= c && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

// isXMLChar reports whether r is in the XML 1.0 Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
