package meshcache

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler returns a read-only HTTP handler over the node's state, for
// a service to mount on an internal port (it shows member addresses, group
// names and counters: do not expose it to the internet). Paths are relative
// to where it is mounted, so it works under [http.StripPrefix] (mount it at
// a path that ends in a slash, "/debug/meshcache/"):
//
//	/            the status page: members, the ring, the groups' counters
//	             (rendered by the server, refreshed by a small script)
//	/v1/stats    the node's and its groups' counters, JSON
//	/v1/members  the members as this node sees them, JSON
//	/v1/ring     the owner of every ring partition, JSON
//	/healthz     200 while the process serves HTTP
//	/readyz      200 when the node is ready ([Node.Ready] closed and
//	             [Node.IsReady]), else 503 with "joining" or "no-lease": it
//	             goes back to 503 when the node loses its lease
//	/metrics     the node's collector ([Node.Collector]) and the Go
//	             runtime's, Prometheus text format
//
// Only GET (and HEAD) are served. Writes stay in the application's hands.
func (n *Node) AdminHandler() http.Handler {
	return newAdmin(n).handler()
}

// newAdmin returns the admin handler's state for n.
func newAdmin(n *Node) *admin {
	return &admin{
		n: n,
		joined: func() bool {
			select {
			case <-n.Ready():
				return true
			default:
				return false
			}
		},
		leased: n.IsReady,
	}
}

func (a *admin) handler() http.Handler {
	n := a.n
	reg := prometheus.NewRegistry()
	// Registering into a new registry fails only on duplicate collectors.
	reg.MustRegister(n.Collector(), collectors.NewGoCollector())
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("GET /{$}", a.status)
	a.mux.HandleFunc("GET /healthz", a.health)
	a.mux.HandleFunc("GET /readyz", a.ready)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	a.mux.HandleFunc("GET /v1/stats", a.stats)
	a.mux.HandleFunc("GET /v1/members", a.members)
	a.mux.HandleFunc("GET /v1/ring", a.ring)
	return a.mux
}

type admin struct {
	n   *Node
	mux *http.ServeMux
	// joined reports whether the node joined its cluster (Node.Ready is
	// closed), leased whether it is ready now (Node.IsReady).
	joined, leased func() bool
}

// adminJSON writes v as the JSON answer with code.
func adminJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (a *admin) health(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readiness returns "ready", "joining" or "no-lease".
func (a *admin) readiness() string {
	if !a.joined() {
		return "joining"
	}
	if !a.leased() {
		// Cut off from a majority of the cluster, or paused: it loads for
		// its callers directly until it holds its lease again.
		return "no-lease"
	}
	return "ready"
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	status := a.readiness()
	code := http.StatusOK
	if status != "ready" {
		code = http.StatusServiceUnavailable
	}
	adminJSON(w, code, map[string]string{"status": status})
}

// adminNodeStats is the "node" object of /v1/stats.
type adminNodeStats struct {
	Name          string `json:"name"`
	Members       int    `json:"members"`
	Writes        uint64 `json:"writes"`
	WritesPartial uint64 `json:"writes_partial"`
	WriteRequests uint64 `json:"write_requests"`
	WriteAcks     uint64 `json:"write_acks"`
	WriteBatches  uint64 `json:"write_batches"`
	GossipSent    uint64 `json:"gossip_sent"`
	GossipApplied uint64 `json:"gossip_applied"`
	PeerRequests  uint64 `json:"peer_requests"`
}

// adminGroupStats is one group's object in /v1/stats.
type adminGroupStats struct {
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

// adminStats is the body of /v1/stats.
type adminStats struct {
	Node   adminNodeStats             `json:"node"`
	Groups map[string]adminGroupStats `json:"groups"`
}

func (a *admin) statsBody() adminStats {
	ns := a.n.Stats()
	body := adminStats{
		Node: adminNodeStats{
			Name:          a.n.Name(),
			Members:       ns.Members,
			Writes:        ns.Writes,
			WritesPartial: ns.WritesPartial,
			WriteRequests: ns.WriteRequests,
			WriteAcks:     ns.WriteAcks,
			WriteBatches:  ns.WriteBatches,
			GossipSent:    ns.GossipSent,
			GossipApplied: ns.GossipApplied,
			PeerRequests:  ns.PeerRequests,
		},
		Groups: make(map[string]adminGroupStats),
	}
	for _, g := range a.n.Groups() {
		st := g.Stats()
		body.Groups[g.Name()] = adminGroupStats{
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

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, a.statsBody())
}

// adminMember is one member in /v1/members.
type adminMember struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip"`
	RPC    string `json:"rpc"`
	State  string `json:"state"`
}

func (a *admin) memberList() []adminMember {
	ms := a.n.Members()
	out := make([]adminMember, len(ms))
	for i, m := range ms {
		out[i] = adminMember{Name: m.Name, Gossip: m.GossipAddr, RPC: m.RPCAddr, State: m.State.String()}
	}
	slices.SortFunc(out, func(a, b adminMember) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (a *admin) members(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, map[string][]adminMember{"members": a.memberList()})
}

// partitions returns the owner of each ring partition: empty for a
// standalone node.
func (a *admin) partitions() []string {
	owners := a.n.PartitionOwners()
	if owners == nil {
		owners = []string{}
	}
	return owners
}

func (a *admin) ring(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, map[string][]string{"partitions": a.partitions()})
}

// The status page.

//go:embed admin.html
var adminHTML string

// adminPage renders the page at /. The same page refreshes itself from
// v1/stats, v1/members, v1/ring and readyz (relative URLs) with a small
// script; the server renders it first so that it reads well without
// scripts.
var adminPage = template.Must(template.New("status").Parse(adminHTML))

// adminPalette colours the ring's members, in the order of their sorted
// names. The page's script uses the same list (passed in the page).
var adminPalette = []string{
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
	"#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c",
}

// ringPictureSize is the size of the ring picture's SVG view box.
const ringPictureSize = 240

// pageData is what the status page template renders.
type pageData struct {
	Node    string
	Ready   bool
	Time    string
	Palette []string
	Members []pageMember
	Ring    pageRing
	Legend  []legendEntry
	Groups  []pageGroup
}

type pageMember struct {
	adminMember
	Color string
	Self  bool
}

// pageRing is the ring picture: a circle with one arc per run of
// consecutive partitions of one owner.
type pageRing struct {
	Size, Center, Radius, Width int
	Total                       int // partitions; 0 for a standalone node
	Segments                    []segment
	Color                       string // of the whole circle, when standalone
}

// A segment is a run of consecutive partitions with one owner, drawn as an
// arc: a dash of a circle whose path length is the number of partitions.
type segment struct {
	Owner, Color string
	Start, Len   int
	Gap          int // Total - Len: the rest of the dash pattern
}

type legendEntry struct {
	Name, Color string
	Partitions  int
	Member      bool // listed in the members (else it left, and the ring lags)
}

type pageGroup struct {
	Name                                string
	HitPercent                          string // the hit rate in percent, "87.5": the bar's width
	Hits, HotHits, NegativeHits, Misses uint64
	Loads, LoadErrors, PeerFetches      uint64
	PeerErrors, Fallbacks, Handoffs     uint64
	PeerServed, L2Hits                  uint64
	Items, HotItems                     int64
	Bytes, HotBytes                     string
}

// pageData gathers what the status page shows now.
func (a *admin) pageData() pageData {
	members := a.memberList()
	owners := a.partitions()
	colors := colorsOf(members, owners)
	d := pageData{
		Node:    a.n.Name(),
		Ready:   a.readiness() == "ready",
		Time:    time.Now().Format("15:04:05"),
		Palette: adminPalette,
		Ring: pageRing{
			Size: ringPictureSize, Center: ringPictureSize / 2, Radius: 90, Width: 40,
			Total: len(owners),
			Color: colors[a.n.Name()],
		},
	}
	for _, m := range members {
		d.Members = append(d.Members, pageMember{adminMember: m, Color: colors[m.Name], Self: m.Name == d.Node})
	}
	counts := make(map[string]int)
	for i := 0; i < len(owners); {
		j := i
		for j < len(owners) && owners[j] == owners[i] {
			j++
		}
		d.Ring.Segments = append(d.Ring.Segments, segment{
			Owner: owners[i], Color: colors[owners[i]], Start: i, Len: j - i, Gap: len(owners) - (j - i),
		})
		counts[owners[i]] += j - i
		i = j
	}
	for _, name := range sortedNames(members, owners) {
		d.Legend = append(d.Legend, legendEntry{
			Name: name, Color: colors[name], Partitions: counts[name],
			Member: slices.ContainsFunc(members, func(m adminMember) bool { return m.Name == name }),
		})
	}
	st := a.statsBody()
	names := make([]string, 0, len(st.Groups))
	for name := range st.Groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := st.Groups[name]
		d.Groups = append(d.Groups, pageGroup{
			Name:       name,
			HitPercent: fmt.Sprintf("%.1f", 100*g.HitRate),
			Hits:       g.Hits, HotHits: g.HotHits, NegativeHits: g.NegativeHits, Misses: g.Misses,
			Loads: g.Loads, PeerFetches: g.PeerFetches, Fallbacks: g.Fallbacks, Handoffs: g.Handoffs,
			Items: g.Items, HotItems: g.HotItems, L2Hits: g.L2Hits,
			Bytes: humanBytes(g.Bytes), HotBytes: humanBytes(g.HotBytes),
			LoadErrors: g.LoadErrors, PeerErrors: g.PeerErrors, PeerServed: g.PeerServed,
		})
	}
	return d
}

// sortedNames returns the names of the members and of the ring's owners,
// sorted, without duplicates.
func sortedNames(members []adminMember, owners []string) []string {
	var names []string
	for _, m := range members {
		names = append(names, m.Name)
	}
	names = append(names, owners...)
	slices.Sort(names)
	return slices.Compact(names)
}

// colorsOf gives each name its colour: palette entries in the order of the
// sorted names, the same rule as the page's script.
func colorsOf(members []adminMember, owners []string) map[string]string {
	colors := make(map[string]string)
	for i, name := range sortedNames(members, owners) {
		colors[name] = adminPalette[i%len(adminPalette)]
	}
	return colors
}

// humanBytes formats n bytes as B, KiB, MiB or GiB, like the page's script.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, units := float64(n)/unit, []string{"KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := adminPage.Execute(&buf, a.pageData()); err != nil {
		a.n.log.Error("meshcache: cannot render the status page", "err", err)
		adminJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot render the status page"})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	_, _ = buf.WriteTo(w)
}
