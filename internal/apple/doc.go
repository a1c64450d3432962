// Package apple holds the wire formats of Apple account-driven enrollment:
// the service discovery answer and refusal bodies, the WWW-Authenticate
// challenge, the sign-in callback URL, bearer header parsing, a fast peek
// into check-in and command-report plists, and the decoding of the first
// enrollment request body.
//
// The package does no I/O. Every function is safe for concurrent use.
package apple
