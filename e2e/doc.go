// Package e2e holds end-to-end tests that build cmd/demo-node once and run
// real clusters of its processes on 127.0.0.1: membership, fleet-wide single
// loads, invalidation, kill -9, SIGSTOP, rolling restarts, bad input, and a
// chaos soak (kill -9 with instant restarts, SIGSTOP, SIGTERM under reads and
// writes; MESHCACHE_CHAOS_DURATION sets its length, 60s by default). The
// partition tests (Linux, root, iproute2) run nodes in network namespaces
// that they create and remove, on addresses inside them, and cut nodes off
// by moving their links to another bridge; they skip where they cannot.
//
// The package has no API; run its tests with
//
//	go test -race ./e2e/
package e2e
