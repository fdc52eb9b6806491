// Package e2e holds end-to-end tests that build cmd/demo-node once and run
// real clusters of its processes on 127.0.0.1: membership, fleet-wide single
// loads, invalidation, kill -9, SIGSTOP, rolling restarts and bad input.
//
// The package has no API; run its tests with
//
//	go test -race ./e2e/
package e2e
