package esso

import "fmt"

// ConfigError reports an Enrollment SSO configuration a device would
// reject. Problem says what is wrong and, where it helps, how to fix it.
type ConfigError struct {
	Problem string
}

// Error implements error.
func (e *ConfigError) Error() string { return "esso: " + e.Problem }

func problem(format string, args ...any) *ConfigError {
	return &ConfigError{Problem: fmt.Sprintf(format, args...)}
}
