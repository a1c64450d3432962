// Package soak is the soak test behind cmd/mdmsoak and test/soak: it runs
// mdm_auth for a long time with real parts on loopback (Caddy built from
// this repository with mdm_auth and reverse_proxy, NanoMDM v0.9.0, the
// zitadel example OpenID provider, Badger on disk) and keeps a fleet of
// emulated devices busy while their credentials churn, then judges the run.
//
// The deployment has two sites on one store: one with web sign-in
// (apple-as-web) and one with OAuth 2 sign-in (apple-oauth2), each with the
// shortest access-token lifetime its method accepts. Every device gets a
// first token minted through the store API, as a sign-in would; most of
// those expire during the run. Visits, paced by a rate and run by a few
// workers, send Status Idle reports, command results of commands queued at
// NanoMDM, TokenUpdate check-ins and re-enrollments; some start with an
// admin action through Caddy's admin API (revoke the token, revoke the
// enrollment's tokens, force re-authentication, block then unblock).
//
// The soak knows, for every device, whether its token must be accepted
// (live), must be refused (expired, or revoked by its own admin action),
// or may be either (sent while it expired). Every MDM request is sent
// without the emulator's 401 handling and checked against that: a 401 on
// a live token and a 200 on a dead one are errors; an expected 401 leads to
// a new token, by a refresh_token grant when the device holds a refresh
// token (which must be refused after a revocation), else by the emulator
// itself signing in again at the provider. Every 5xx and every request
// without an answer, anywhere, is an error too.
//
// Caddy's goroutines (its admin endpoint's goroutine profile), open file
// descriptors and resident memory (/proc), the store directory's size and
// the size of a backup of the store (its live data) are sampled during the
// run; JudgeGrowth and JudgeStore turn the samples after the warm-up into
// verdicts. Nothing here imports Caddy.
package soak
