// Package ratelimit holds the in-process abuse limits of the gateway: a
// sharded token-bucket Limiter whose memory is bounded by a fixed number of
// tracked keys (the least recently used key is evicted first, so spraying
// keys cannot grow it), and a Window that counts recent events, used as an
// upper bound of pending sign-ins. Time is injected; nothing here sleeps.
package ratelimit
