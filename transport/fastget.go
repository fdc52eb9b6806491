//go:build !meshcache_plainget

package transport

// fastGet selects the Get fast path (fastpath.go). Built with the tag
// meshcache_plainget, Get requests and responses take the generated code
// like every other message, to measure what the fast path saves
// (BENCHMARKS.md, "Hand-written fast path for Get").
const fastGet = true
