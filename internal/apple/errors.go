package apple

// RequestError is a refusal of malformed or unacceptable input from a
// device or browser. Reason is for logs; Message is safe to show the user.
// Neither contains the offending input.
type RequestError struct {
	Reason  string
	Message string
}

// Error implements error with the log reason.
func (e *RequestError) Error() string { return "apple: bad request: " + e.Reason }

// MalformedError reports a check-in or command-report body that is not an
// XML plist with a dictionary root, or that cannot be read safely. Reason
// never contains body content.
type MalformedError struct {
	Reason string
}

// Error implements error.
func (e *MalformedError) Error() string { return "apple: malformed plist: " + e.Reason }
