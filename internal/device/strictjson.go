package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// jsonObject is a decoded JSON object that remembers its key order.
type jsonObject struct {
	Keys   []string
	Values map[string]json.RawMessage
}

// parseStrictObject decodes data as one JSON object. Duplicate keys and
// data after the object are errors.
func parseStrictObject(data []byte) (*jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	obj, err := readStrictObject(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

func readStrictObject(dec *json.Decoder) (*jsonObject, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("JSON value is not an object")
	}
	obj := &jsonObject{Values: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("invalid JSON object key")
		}
		if _, dup := obj.Values[key]; dup {
			return nil, fmt.Errorf("duplicate JSON key %q", key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON value for %q: %w", key, err)
		}
		obj.Keys = append(obj.Keys, key)
		obj.Values[key] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return obj, nil
}

// stringField decodes obj[key] as a JSON string. ok is false when the key
// is absent.
func (o *jsonObject) stringField(key string) (s string, ok bool, err error) {
	raw, ok := o.Values[key]
	if !ok {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%q is not a JSON string", key)
	}
	return s, true, nil
}

// JSONObject is a JSON object decoded strictly, as a device reads one: its
// keys in order and their raw values.
type JSONObject struct {
	Keys   []string
	Values map[string]json.RawMessage
}

// ParseJSONObject decodes data as exactly one JSON object; duplicate keys
// and data after the object are errors, as they are to a device.
func ParseJSONObject(data []byte) (*JSONObject, error) {
	o, err := parseStrictObject(data)
	if err != nil {
		return nil, err
	}
	return &JSONObject{Keys: o.Keys, Values: o.Values}, nil
}
