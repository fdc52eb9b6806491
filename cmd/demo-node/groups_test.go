package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshcache/meshcache"
)

// TestAPIGroupNames: group names that cannot be file names, or are out of
// bounds, are refused.
func TestAPIGroupNames(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	long := strings.Repeat("k", meshcache.MaxKeyLen+1)
	checkStatusCodes(t, ts, []statusCase{
		{"GET", "/v1/a%2Fb/k", "", 404, "group names are file names"},
		{"GET", "/v1/" + long + "/k", "", 400, "group name of 513 bytes"},
		{"GET", "/v1/%FF/k", "", 400, "not UTF-8"},
		{"POST", "/v1/a%2Fb/-/clear", "", 404, "group names"},
	})
}

func TestAPIGroupLimit(t *testing.T) {
	s, ts, _ := newStandaloneAPI(t)
	have := len(s.node.Groups())
	for i := have; i < maxGroups; i++ {
		if r := do(t, ts, "GET", fmt.Sprintf("/v1/g%d/k", i), nil); r.code != 404 {
			t.Fatalf("GET in new group %d = %d %q, want 404", i, r.code, r.body)
		}
	}
	r := do(t, ts, "GET", "/v1/onemore/k", nil)
	if r.code != 400 || !strings.Contains(r.body, "groups") {
		t.Errorf("GET in group %d = %d %q, want 400 about groups", maxGroups+1, r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.code != 200 {
		t.Errorf("GET in an existing group = %d, want 200", r.code)
	}
}
