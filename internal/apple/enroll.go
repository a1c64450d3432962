package apple

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// Limits applied to the first enrollment request body.
const (
	maxEnrollBody    = 256 << 10 // CMS with certificate chain
	maxEnrollContent = 64 << 10  // the plist inside
	maxEnrollDepth   = 32        // dict/array nesting of that plist
)

// EnrollInfo is what the first enrollment request body says about the
// device. It is best effort and meant for the audit log only: the signature
// is not verified.
type EnrollInfo struct {
	// Language is the LANGUAGE value, such as "en-US".
	Language string
	// Product is the PRODUCT value, such as "iPhone17,2".
	Product string
	// Version is the VERSION value, the OS build such as "23A300".
	Version string
	// Signed reports whether the plist came inside CMS SignedData.
	Signed bool
}

// DecodeEnrollBody reads the body of an enrollment POST: DER (or BER) CMS
// SignedData with attached content holding an XML plist, or a bare XML
// plist (Signed is then false). It takes the string values of LANGUAGE,
// PRODUCT and VERSION; other keys and values of other types are ignored.
// Neither the signature nor the certificate chain is verified. Errors are
// returned, never panics, and the input size is bounded.
func DecodeEnrollBody(body []byte) (info EnrollInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			info, err = EnrollInfo{}, fmt.Errorf("apple: enrollment body: decoder panic: %v", r)
		}
	}()
	if len(body) > maxEnrollBody {
		return EnrollInfo{}, errors.New("apple: enrollment body too large")
	}
	content := body
	if len(body) > 0 && body[0] == 0x30 { // ASN.1 SEQUENCE: CMS ContentInfo
		p7, err := pkcs7.Parse(body)
		if err != nil {
			return EnrollInfo{}, fmt.Errorf("apple: enrollment body: %w", err)
		}
		if len(p7.Content) == 0 {
			return EnrollInfo{}, errors.New("apple: enrollment body: CMS without attached content")
		}
		content = p7.Content
		info.Signed = true
	}
	if len(content) > maxEnrollContent {
		return EnrollInfo{}, errors.New("apple: enrollment plist too large")
	}
	if !looksLikeXML(content) {
		return EnrollInfo{}, errors.New("apple: enrollment body is neither CMS nor an XML plist")
	}
	if err := checkNesting(content, maxEnrollDepth); err != nil {
		return EnrollInfo{}, err
	}
	var m map[string]any
	if err := plist.NewXMLDecoder(bytes.NewReader(content)).Decode(&m); err != nil {
		return EnrollInfo{}, fmt.Errorf("apple: enrollment plist: %w", err)
	}
	info.Language, _ = m["LANGUAGE"].(string)
	info.Product, _ = m["PRODUCT"].(string)
	info.Version, _ = m["VERSION"].(string)
	return info, nil
}

// looksLikeXML reports whether b starts, after an optional byte order mark
// and whitespace, with '<'.
func looksLikeXML(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '<'
}

// checkNesting bounds the element nesting of an XML document before it is
// handed to a recursive decoder. It counts start and end tags, skipping
// comments, CDATA sections, declarations and processing instructions; it
// does not otherwise validate the document.
func checkNesting(b []byte, limit int) error {
	depth := 0
	for {
		i := bytes.IndexByte(b, '<')
		if i < 0 {
			return nil
		}
		b = b[i:]
		var end []byte
		switch {
		case bytes.HasPrefix(b, []byte("<!--")):
			end = []byte("-->")
		case bytes.HasPrefix(b, []byte("<![CDATA[")):
			end = []byte("]]>")
		case bytes.HasPrefix(b, []byte("<?")):
			end = []byte("?>")
		case bytes.HasPrefix(b, []byte("</")):
			if depth--; depth < 0 {
				return errors.New("apple: enrollment plist has an unbalanced end tag")
			}
		case bytes.HasPrefix(b, []byte("<!")):
			// A declaration: its end is the next '>', which is good enough
			// for counting; quoted '>' only make the count stricter.
		default:
			j := tagEnd(b)
			if j < 0 {
				return nil // truncated: the decoder reports it
			}
			if b[j-1] != '/' {
				if depth++; depth > limit {
					return errors.New("apple: enrollment plist nested too deeply")
				}
			}
			b = b[j:]
		}
		if end != nil {
			j := bytes.Index(b, end)
			if j < 0 {
				return nil
			}
			b = b[j+len(end):]
			continue
		}
		b = b[1:]
	}
}

// tagEnd returns the index of the '>' closing the start tag at the start of
// b, skipping quoted attribute values, or -1.
func tagEnd(b []byte) int {
	var quote byte
	for j := 1; j < len(b); j++ {
		switch c := b[j]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return j
		}
	}
	return -1
}
