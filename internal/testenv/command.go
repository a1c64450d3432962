package testenv

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/micromdm/plist"
)

// NewCommand returns a new upper-case UUID and an MDM command plist
// {CommandUUID, Command: {RequestType, params...}} for NanoMDM's enqueue API. params holds
// command-specific keys; values may be strings, booleans, integers, []byte (data), slices
// and maps of those.
func NewCommand(requestType string, params map[string]any) (uuid string, command []byte, err error) {
	uuid = newUUID()
	cmd := map[string]any{"RequestType": requestType}
	for k, v := range params {
		if k == "RequestType" {
			return "", nil, fmt.Errorf("testenv: NewCommand: params must not set RequestType")
		}
		cmd[k] = v
	}
	b, err := plist.MarshalIndent(map[string]any{"CommandUUID": uuid, "Command": cmd}, "\t")
	if err != nil {
		return "", nil, fmt.Errorf("testenv: NewCommand %s: %w", requestType, err)
	}
	return uuid, b, nil
}

// mustCommand is NewCommand for parameters known to encode.
func mustCommand(requestType string, params map[string]any) (string, []byte) {
	uuid, b, err := NewCommand(requestType, params)
	if err != nil {
		panic(err)
	}
	return uuid, b
}

// DeviceInformationCommand returns a DeviceInformation command asking for queries (default:
// UDID, DeviceName, OSVersion, Model, ProductName, SerialNumber).
func DeviceInformationCommand(queries ...string) (uuid string, command []byte) {
	if len(queries) == 0 {
		queries = []string{"UDID", "DeviceName", "OSVersion", "Model", "ProductName", "SerialNumber"}
	}
	return mustCommand("DeviceInformation", map[string]any{"Queries": queries})
}

// ProfileListCommand returns a ProfileList command.
func ProfileListCommand() (uuid string, command []byte) {
	return mustCommand("ProfileList", nil)
}

// RemoveProfileCommand returns a RemoveProfile command for the profile with identifier.
func RemoveProfileCommand(identifier string) (uuid string, command []byte) {
	return mustCommand("RemoveProfile", map[string]any{"Identifier": identifier})
}

// newUUID returns a random (version 4) UUID in upper case, as Apple writes them.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
