package checker

import (
	"encoding/json"
	"mime"
	"strings"

	"github.com/mdmauth/mdmauth/internal/device"
)

// jsonObject is a strictly decoded JSON object (the emulator's parser).
type jsonObject = device.JSONObject

// parseStrictObject decodes data as one JSON object, as a device does.
func parseStrictObject(data []byte) (*jsonObject, error) { return device.ParseJSONObject(data) }

// jsonString decodes raw as a JSON string; ok is false for any other type.
func jsonString(raw json.RawMessage) (s string, ok bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// mediaType returns the lower-cased media type of a Content-Type value (""
// when absent or unparsable).
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}
