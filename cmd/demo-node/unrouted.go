package main

import (
	"fmt"
	"net/http"
	"strings"
)

// serveUnrouted answers r, which no route matches; h is the mux's own
// answer to it. The mux decides between 404 and 405 (and its Allow header);
// serveUnrouted gives the answer the API's JSON error body in place of the
// mux's plain text, and answers 400 for /v1/{group}/ with an empty key. A
// redirect to the cleaned path is left to the mux.
func (s *server) serveUnrouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	probe := &probeWriter{header: make(http.Header)}
	h.ServeHTTP(probe, r)
	switch {
	case probe.code == http.StatusNotFound && emptyKeyPath(r.URL.Path):
		writeError(w, http.StatusBadRequest, "empty key")
	case probe.code == http.StatusNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	case probe.code == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", probe.header.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed for %s", r.Method, r.URL.Path))
	default: // a redirect to the cleaned path
		s.mux.ServeHTTP(w, r)
	}
}

// emptyKeyPath reports whether path is /v1/{group}/ with an empty key.
func emptyKeyPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/")
	group, key, ok2 := strings.Cut(rest, "/")
	return ok && ok2 && group != "" && key == ""
}

// probeWriter records what the mux's own 404 and 405 handlers would answer.
type probeWriter struct {
	header http.Header
	code   int
}

func (w *probeWriter) Header() http.Header { return w.header }
func (w *probeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *probeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
