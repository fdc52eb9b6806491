package main

import (
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

	"github.com/meshcache/meshcache"
)

// maxBodyBytes bounds a request body (a PUT's value).
const maxBodyBytes = 1 << 20

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

// ServeHTTP serves the API and logs each request. Requests no route
// matches are answered by serveUnrouted.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.serveUnrouted(rec, r, h)
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "duration", time.Since(start))
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
