package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/meshcache/meshcache"
)

// Limits of the HTTP API.
const (
	// maxGroups bounds the groups created on first use.
	maxGroups = 64
	// groupMainBytes bounds each group's main cache.
	groupMainBytes = 16 << 20
	// maxBodyBytes bounds a request body (a PUT's value).
	maxBodyBytes = 1 << 20
)

// defaultGroups are created at start, on every node, so that peers always
// know them (a node asked for a group it lacks makes the asker load the key
// itself).
var defaultGroups = []string{"users", "pages"}

// server is the HTTP API of one node.
type server struct {
	node   *meshcache.Node
	origin *origin
	hotTTL time.Duration
	log    *slog.Logger
	mux    *http.ServeMux
	admin  http.Handler // the node's read-only pages: node.AdminHandler()

	mu sync.Mutex // serialises the creation of groups
}

// newServer returns the HTTP API of node, loading from o, with the groups
// defaultGroups and one per subdirectory of o.dir already created.
func newServer(node *meshcache.Node, o *origin, hotTTL time.Duration, log *slog.Logger) (*server, error) {
	s := &server{
		node:   node,
		origin: o,
		hotTTL: hotTTL,
		log:    log,
		mux:    http.NewServeMux(),
		admin:  node.AdminHandler(),
	}
	for _, name := range append(slices.Clone(defaultGroups), originGroups(o.dir, maxGroups-len(defaultGroups))...) {
		if _, err := s.group(name); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

func (s *server) routes() {
	// The status page, health, metrics and the node's state come from the
	// library's admin handler.
	for _, path := range []string{"/{$}", "/healthz", "/readyz", "/metrics", "/v1/stats", "/v1/members", "/v1/ring"} {
		s.mux.Handle("GET "+path, s.admin)
	}
	s.mux.HandleFunc("GET /v1/{group}/{key}", s.handleGet)
	s.mux.HandleFunc("PUT /v1/{group}/{key}", s.handlePut)
	s.mux.HandleFunc("DELETE /v1/{group}/{key}", s.handleDelete)
	s.mux.HandleFunc("POST /v1/{group}/-/invalidate-tags", s.handleInvalidateTags)
	s.mux.HandleFunc("POST /v1/{group}/-/clear", s.handleClear)
}

// ServeHTTP serves the API. Requests no route matches get a JSON 404 or
// 405 (with Allow) instead of the mux's plain text ones.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if h, pattern := s.mux.Handler(r); pattern == "" {
		probe := &probeWriter{header: make(http.Header)}
		h.ServeHTTP(probe, r)
		switch {
		case probe.code == http.StatusNotFound && emptyKeyPath(r.URL.Path):
			writeError(rec, http.StatusBadRequest, "empty key")
		case probe.code == http.StatusNotFound:
			writeError(rec, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
		case probe.code == http.StatusMethodNotAllowed:
			rec.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(rec, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed for %s", r.Method, r.URL.Path))
		default: // a redirect to the cleaned path
			s.mux.ServeHTTP(rec, r)
		}
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "duration", time.Since(start))
}

// emptyKeyPath reports whether path is /v1/{group}/ with an empty key.
func emptyKeyPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/")
	group, key, ok2 := strings.Cut(rest, "/")
	return ok && ok2 && group != "" && key == ""
}

// statusWriter remembers the status code written, for the request log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error   string   `json:"error"`
	Unacked []string `json:"unacked,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// writeFailure answers a failed library call: 503 with the unacknowledged
// members for a partial write, else the status statusOf picks, with
// fallback for errors it does not know.
func writeFailure(w http.ResponseWriter, err error, fallback int) {
	var ie *meshcache.InvalidateError
	if errors.As(err, &ie) {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Unacked: ie.Unacked})
		return
	}
	writeError(w, statusOf(err, fallback), err.Error())
}

// statusOf maps a library error to an HTTP status.
func statusOf(err error, fallback int) int {
	switch {
	case errors.Is(err, errOriginDown) || strings.Contains(err.Error(), errOriginDown.Error()):
		// The origin is down (-origin DIR/.down), here or at the key's
		// owner, whose error arrives as text: unavailable, not a bad
		// answer.
		return http.StatusServiceUnavailable
	case errors.Is(err, meshcache.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, meshcache.ErrEmptyKey), errors.Is(err, meshcache.ErrKeyTooLong),
		errors.Is(err, meshcache.ErrInvalidTag), errors.Is(err, meshcache.ErrInvalidTTL),
		errors.Is(err, meshcache.ErrInvalidName):
		return http.StatusBadRequest
	case errors.Is(err, meshcache.ErrClosed), errors.Is(err, meshcache.ErrPartialInvalidation),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, meshcache.ErrLoadFailed), errors.Is(err, meshcache.ErrLoaderPanic):
		return http.StatusBadGateway
	}
	return fallback
}

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

// requestKey returns r's {key}, or answers 400 for a key out of bounds.
func requestKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if key == "" || len(key) > meshcache.MaxKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("key of %d bytes: want 1 to %d", len(key), meshcache.MaxKeyLen))
		return "", false
	}
	return key, true
}

func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	key, ok := requestKey(w, r)
	if !ok {
		return
	}
	g, ok := s.requestGroup(w, r)
	if !ok {
		return
	}
	var src meshcache.Source
	v, err := g.Get(r.Context(), key, meshcache.ReportSource(&src))
	w.Header().Set("X-Owner", s.node.Owner(key))
	if err != nil {
		if errors.Is(err, meshcache.ErrNotFound) {
			w.Header().Set("X-Cache", src.String())
		}
		writeFailure(w, err, http.StatusBadGateway)
		return
	}
	w.Header().Set("X-Cache", src.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v)
}

func (s *server) handlePut(w http.ResponseWriter, r *http.Request) {
	key, ok := requestKey(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var it meshcache.Item
	if q.Has("ttl") {
		d, err := time.ParseDuration(q.Get("ttl"))
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a positive duration such as 30s", q.Get("ttl")))
			return
		}
		it.TTL = d
	}
	for _, list := range q["tags"] {
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t != "" {
				it.Tags = append(it.Tags, t)
			}
		}
	}
	if r.ContentLength > maxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes: at most %d", r.ContentLength, maxBodyBytes))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the body: %v", err))
		return
	}
	it.Value = body
	g, ok := s.requestGroup(w, r)
	if !ok {
		return
	}
	if err := g.Set(r.Context(), key, it); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, meshcache.ErrValueTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		writeFailure(w, err, code)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleDelete(w http.ResponseWriter, r *http.Request) {
	key, ok := requestKey(w, r)
	if !ok {
		return
	}
	g, ok := s.requestGroup(w, r)
	if !ok {
		return
	}
	if err := g.Invalidate(r.Context(), key); err != nil {
		writeFailure(w, err, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleInvalidateTags(w http.ResponseWriter, r *http.Request) {
	tags := r.URL.Query()["tag"]
	if len(tags) == 0 {
		writeError(w, http.StatusBadRequest, "no tag: give one or more tag=... parameters")
		return
	}
	g, ok := s.requestGroup(w, r)
	if !ok {
		return
	}
	if err := g.InvalidateTags(r.Context(), tags...); err != nil {
		writeFailure(w, err, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleClear(w http.ResponseWriter, r *http.Request) {
	g, ok := s.requestGroup(w, r)
	if !ok {
		return
	}
	if err := g.Clear(r.Context()); err != nil {
		writeFailure(w, err, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
