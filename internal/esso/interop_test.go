package esso_test

import (
	"bytes"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/esso"
)

// TestDeviceAcceptsDocuments checks Build's output against the device
// emulator, an independent reading of the same protocol.
func TestDeviceAcceptsDocuments(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, c *esso.Config)
	}{
		{"standard", func(*testing.T, *esso.Config) {}},
		{"credential profile, direct downloads", func(t *testing.T, c *esso.Config) {
			c.ConfigurationProfile = fixture(t, "credential.mobileconfig")
			c.DirectDownloads = true
		}},
		{"profile only", func(_ *testing.T, c *esso.Config) { c.Declarations = nil }},
		{"declarations only", func(_ *testing.T, c *esso.Config) { c.ConfigurationProfile = nil }},
		{"test mode", func(t *testing.T, c *esso.Config) {
			c.TestMode, c.ITunesStoreID, c.AppIDs = true, 0, []string{"ABCDE12345.com.example.sso"}
			c.Declarations[1] = declaration(t, "app-bundle", nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.edit(t, &c)
			body, err := esso.Build(c)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			doc, err := device.ParseESSODocument("application/json", body, c.TestMode)
			if err != nil {
				t.Fatalf("the device rejects the document: %v", err)
			}
			if doc.ITunesStoreID != c.ITunesStoreID || len(doc.AppIDs) != len(c.AppIDs) ||
				len(doc.Declarations) != len(c.Declarations) || !bytes.Equal(doc.ConfigurationProfile, c.ConfigurationProfile) ||
				doc.AssociatedDomainsEnableDirectDownloads != c.DirectDownloads {
				t.Errorf("the device read %+v from %+v", doc, c)
			}
		})
	}
}
