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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	node    *meshcache.Node
	readyCh <-chan struct{} // closed once the node is ready: node.Ready()
	isReady func() bool     // whether it is ready now: node.IsReady
	origin  *origin
	hotTTL  time.Duration
	log     *slog.Logger
	mux     *http.ServeMux
	metrics http.Handler

	mu sync.Mutex // serialises the creation of groups
}

// newServer returns the HTTP API of node, loading from o, with the groups
// defaultGroups and one per subdirectory of o.dir already created.
func newServer(node *meshcache.Node, o *origin, hotTTL time.Duration, log *slog.Logger) (*server, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(node.Collector()); err != nil {
		return nil, fmt.Errorf("register the node's metrics: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register the Go metrics: %w", err)
	}
	s := &server{
		node:    node,
		readyCh: node.Ready(),
		isReady: node.IsReady,
		origin:  o,
		hotTTL:  hotTTL,
		log:     log,
		mux:     http.NewServeMux(),
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}),
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
	s.mux.HandleFunc("GET /{$}", s.handleStatus)
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	s.mux.Handle("GET /metrics", s.metrics)
	s.mux.HandleFunc("GET /v1/stats", s.handleStats)
	s.mux.HandleFunc("GET /v1/members", s.handleMembers)
	s.mux.HandleFunc("GET /v1/ring", s.handleRing)
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

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ready reports whether the node is ready now: joined, settled, and
// holding its lease (it can become unready again, see Node.IsReady).
func (s *server) ready() bool { return s.joined() && s.isReady() }

// joined reports whether the node was ready once.
func (s *server) joined() bool {
	select {
	case <-s.readyCh:
		return true
	default:
		return false
	}
}

func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	switch {
	case !s.joined():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "joining"})
		return
	case !s.isReady():
		// Cut off from a majority of the cluster, or paused: it loads for
		// its callers directly until it holds its lease again.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "no-lease"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// nodeStats is the "node" object of /v1/stats.
type nodeStats struct {
	Name          string `json:"name"`
	Members       int    `json:"members"`
	Writes        uint64 `json:"writes"`
	WritesPartial uint64 `json:"writes_partial"`
	WriteRequests uint64 `json:"write_requests"`
	WriteAcks     uint64 `json:"write_acks"`
	GossipSent    uint64 `json:"gossip_sent"`
	GossipApplied uint64 `json:"gossip_applied"`
	PeerRequests  uint64 `json:"peer_requests"`
}

// groupStats is one group's object in /v1/stats.
type groupStats struct {
	Hits              uint64  `json:"hits"`
	HotHits           uint64  `json:"hot_hits"`
	NegativeHits      uint64  `json:"negative_hits"`
	Misses            uint64  `json:"misses"`
	Loads             uint64  `json:"loads"`
	BatchLoads        uint64  `json:"batch_loads"`
	LoadErrors        uint64  `json:"load_errors"`
	LoadsDeduplicated uint64  `json:"loads_deduplicated"`
	PeerFetches       uint64  `json:"peer_fetches"`
	PeerErrors        uint64  `json:"peer_errors"`
	Fallbacks         uint64  `json:"fallbacks"`
	Handoffs          uint64  `json:"handoffs"`
	PeerServed        uint64  `json:"peer_served"`
	StaleServed       uint64  `json:"stale_served"`
	Revalidations     uint64  `json:"revalidations"`
	L2Hits            uint64  `json:"l2_hits"`
	L2Misses          uint64  `json:"l2_misses"`
	L2Errors          uint64  `json:"l2_errors"`
	L2Bypassed        uint64  `json:"l2_bypassed"`
	L2Stores          uint64  `json:"l2_stores"`
	Evictions         uint64  `json:"evictions"`
	Expirations       uint64  `json:"expirations"`
	Items             int64   `json:"items"`
	Bytes             int64   `json:"bytes"`
	HotItems          int64   `json:"hot_items"`
	HotBytes          int64   `json:"hot_bytes"`
	HitRate           float64 `json:"hit_rate"`
}

// statsBody is the body of /v1/stats.
type statsBody struct {
	Node   nodeStats             `json:"node"`
	Groups map[string]groupStats `json:"groups"`
}

func (s *server) stats() statsBody {
	ns := s.node.Stats()
	body := statsBody{
		Node: nodeStats{
			Name:          s.node.Name(),
			Members:       ns.Members,
			Writes:        ns.Writes,
			WritesPartial: ns.WritesPartial,
			WriteRequests: ns.WriteRequests,
			WriteAcks:     ns.WriteAcks,
			GossipSent:    ns.GossipSent,
			GossipApplied: ns.GossipApplied,
			PeerRequests:  ns.PeerRequests,
		},
		Groups: make(map[string]groupStats),
	}
	for _, g := range s.node.Groups() {
		st := g.Stats()
		body.Groups[g.Name()] = groupStats{
			Hits:              st.Hits,
			HotHits:           st.HotHits,
			NegativeHits:      st.NegativeHits,
			Misses:            st.Misses,
			Loads:             st.Loads,
			BatchLoads:        st.BatchLoads,
			LoadErrors:        st.LoadErrors,
			LoadsDeduplicated: st.LoadsDeduplicated,
			PeerFetches:       st.PeerFetches,
			PeerErrors:        st.PeerErrors,
			Fallbacks:         st.Fallbacks,
			Handoffs:          st.Handoffs,
			PeerServed:        st.PeerServed,
			StaleServed:       st.StaleServed,
			Revalidations:     st.Revalidations,
			L2Hits:            st.L2Hits,
			L2Misses:          st.L2Misses,
			L2Errors:          st.L2Errors,
			L2Bypassed:        st.L2Bypassed,
			L2Stores:          st.L2Stores,
			Evictions:         st.Evictions,
			Expirations:       st.Expirations,
			Items:             st.Items,
			Bytes:             st.Bytes,
			HotItems:          st.HotItems,
			HotBytes:          st.HotBytes,
			HitRate:           st.HitRate(),
		}
	}
	return body
}

func (s *server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.stats())
}

// memberJSON is one member in /v1/members.
type memberJSON struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip"`
	RPC    string `json:"rpc"`
	State  string `json:"state"`
}

func (s *server) members() []memberJSON {
	ms := s.node.Members()
	out := make([]memberJSON, len(ms))
	for i, m := range ms {
		out[i] = memberJSON{Name: m.Name, Gossip: m.GossipAddr, RPC: m.RPCAddr, State: m.State.String()}
	}
	slices.SortFunc(out, func(a, b memberJSON) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *server) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]memberJSON{"members": s.members()})
}

// partitions returns the owner of each ring partition: empty for a
// standalone node.
func (s *server) partitions() []string {
	owners := s.node.PartitionOwners()
	if owners == nil {
		owners = []string{}
	}
	return owners
}

func (s *server) handleRing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]string{"partitions": s.partitions()})
}
