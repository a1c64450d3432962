// Package bench is the benchmark harness behind cmd/mdmbench: it measures
// what mdm_auth adds to a plain Caddy reverse_proxy on the MDM's hot path,
// with real processes on loopback (Caddy built from this repository,
// NanoMDM v0.9.0, the zitadel example OpenID provider, a minimal upstream,
// and for the PostgreSQL store a private PostgreSQL server).
//
// The parts:
//
//   - Run orchestrates the phases (A/B runs, with C, the PostgreSQL store,
//     next to them; profiles, scale, enrollments, Go benchmarks) and
//     returns a Report;
//   - RunLoad is the load generator: keep-alive HTTP/1.1 connections that
//     write prepared requests (a Fleet) closed loop or open loop and record
//     latencies in a Histogram;
//   - Preload writes live tokens bound to enrollments through the store API
//     before Caddy opens the store; Tokens derives them from a seed, so
//     a million devices need no table;
//   - ReadProc samples a process's CPU time and resident set from /proc,
//     the resident set split into anonymous (heap) and file-backed (mapped
//     files, page cache) pages; TreeCPU the CPU time of a process tree
//     (PostgreSQL's postmaster and its backends, exited ones included);
//   - Evaluate checks a Report against the performance targets; the
//     Report renders as text, Markdown (UpdateDocs) and JSON.
//
// Nothing here imports Caddy: Caddy is a separate process, so its CPU and
// memory are its own.
package bench
