package main

import (
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/meshcache/meshcache"
)

// Limits of the group registry.
const (
	// maxGroups bounds the groups created on first use.
	maxGroups = 64
	// groupMainBytes bounds each group's main cache.
	groupMainBytes = 16 << 20
)

// defaultGroups are created at start, on every node, so that peers always
// know them (a node asked for a group it lacks makes the asker load the key
// itself).
var defaultGroups = []string{"users", "pages"}

// errGroup is a group name the API refuses; code is the answer's status.
type errGroup struct {
	code int
	msg  string
}

func (e *errGroup) Error() string { return e.msg }

// group returns the group name, created on first use.
func (s *server) group(name string) (*meshcache.Group, error) {
	if g, ok := s.node.Group(name); ok {
		return g, nil
	}
	switch {
	case len(name) > meshcache.MaxKeyLen:
		return nil, &errGroup{http.StatusBadRequest, fmt.Sprintf("group name of %d bytes: at most %d", len(name), meshcache.MaxKeyLen)}
	case !utf8.ValidString(name):
		return nil, &errGroup{http.StatusBadRequest, "group name is not UTF-8"}
	case !safeName(name):
		return nil, &errGroup{http.StatusNotFound, fmt.Sprintf("no group %q: group names are file names", name)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.node.Group(name); ok {
		return g, nil
	}
	if len(s.node.Groups()) >= maxGroups {
		return nil, &errGroup{http.StatusBadRequest, fmt.Sprintf("no group %q, and this node already has %d groups, the most it creates", name, maxGroups)}
	}
	opts := []meshcache.GroupOption{
		meshcache.WithTTL(s.origin.ttl), meshcache.WithHotTTL(s.hotTTL),
		// Up to maxGroups groups, created by anyone who can reach the API:
		// 16 MiB (+2 MiB hot) each keeps a node within about 1.2 GiB.
		meshcache.WithMainBytes(groupMainBytes), meshcache.WithHotBytes(groupMainBytes / 8),
	}
	if d := s.origin.staleIfError; d > 0 {
		opts = append(opts, meshcache.WithStaleIfError(d))
	}
	if d := s.origin.staleWhileRevalidate; d > 0 {
		opts = append(opts, meshcache.WithStaleWhileRevalidate(d))
	}
	if s.origin.l2 != nil {
		opts = append(opts, meshcache.WithL2(s.origin.l2))
	}
	g, err := meshcache.NewGroup(s.node, name, s.origin.loader(name), opts...)
	if err != nil {
		code := statusOf(err, http.StatusInternalServerError)
		return nil, &errGroup{code, err.Error()}
	}
	s.log.Info("created group", "group", name)
	return g, nil
}

// requestGroup returns the group of r's {group}, or answers the error.
func (s *server) requestGroup(w http.ResponseWriter, r *http.Request) (*meshcache.Group, bool) {
	g, err := s.group(r.PathValue("group"))
	if err != nil {
		var ge *errGroup
		if errors.As(err, &ge) {
			writeError(w, ge.code, ge.msg)
		} else {
			writeError(w, http.StatusInternalServerError, err.Error())
		}
		return nil, false
	}
	return g, true
}
