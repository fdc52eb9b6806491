package main

import "testing"

// TestAPIUnrouted: a request no route matches gets a JSON 404, or 405
// with Allow, and /v1/{group}/ a 400 for its empty key.
func TestAPIUnrouted(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	checkStatusCodes(t, ts, []statusCase{
		{"GET", "/v1/users/", "", 400, "empty key"},
		{"GET", "/v1/users/%2E%2E", "", 404, ""}, // cleaned by the mux: /v1/, no route
		{"DELETE", "/v1/users/", "", 400, "empty key"},
		{"GET", "/nope", "", 404, "no route"},
		{"GET", "/v1/users", "", 404, "no route"},
		{"GET", "/v1/users/k/extra", "", 404, "no route"},
		{"POST", "/v1/stats", "", 405, "not allowed"},
		{"DELETE", "/", "", 405, "not allowed"},
		{"PATCH", "/v1/users/k", "", 405, "not allowed"},
		{"GET", "/v1/users/-/clear", "", 405, "not allowed"},
		{"POST", "/metrics", "", 405, "not allowed"},
	})
}
