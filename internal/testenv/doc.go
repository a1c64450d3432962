// Package testenv starts the real components that the end-to-end tests and the loopback demo
// run against: a throw-away PKI, NanoMDM, an OpenID Connect provider and Caddy. Every component
// listens on 127.0.0.1 (the OIDC provider's issuer is http://localhost:<port>/) on a free port,
// writes its output to a log file, and is killed, with its whole process group, when the TB that
// started it is cleaned up.
//
// The package does not import testing: tests pass their *testing.T (it satisfies [TB]); programs
// use a [Scope].
//
// Binaries are taken from an environment override (see [EnvVar]), from <repo>/.bin, or installed
// there with "go install" at a pinned version; Caddy is built from <repo>/cmd/caddy.
package testenv
