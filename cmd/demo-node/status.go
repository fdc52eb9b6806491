package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"
)

//go:embed status.html
var statusHTML string

// statusPage renders the page at GET /. The same page refreshes itself from
// /v1/stats, /v1/members, /v1/ring and /readyz with a small script; the
// server renders it first so that it reads well without scripts.
var statusPage = template.Must(template.New("status").Parse(statusHTML))

// palette colours the ring's members, in the order of their sorted names.
// The page's script uses the same list (passed in the page).
var palette = []string{
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
	"#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c",
}

// ringSize is the size of the ring picture's SVG view box.
const ringSize = 240

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
	memberJSON
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
	PeerServed                          uint64
	Items, HotItems                     int64
	Bytes, HotBytes                     string
}

// pageData gathers what the status page shows now.
func (s *server) pageData() pageData {
	members := s.members()
	owners := s.partitions()
	colors := colorsOf(members, owners)
	d := pageData{
		Node:    s.node.Name(),
		Ready:   s.ready(),
		Time:    time.Now().Format("15:04:05"),
		Palette: palette,
		Ring: pageRing{
			Size: ringSize, Center: ringSize / 2, Radius: 90, Width: 40,
			Total: len(owners),
			Color: colors[s.node.Name()],
		},
	}
	for _, m := range members {
		d.Members = append(d.Members, pageMember{memberJSON: m, Color: colors[m.Name], Self: m.Name == d.Node})
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
			Member: slices.ContainsFunc(members, func(m memberJSON) bool { return m.Name == name }),
		})
	}
	st := s.stats()
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
			Items: g.Items, HotItems: g.HotItems,
			Bytes: humanBytes(g.Bytes), HotBytes: humanBytes(g.HotBytes),
			LoadErrors: g.LoadErrors, PeerErrors: g.PeerErrors, PeerServed: g.PeerServed,
		})
	}
	return d
}

// sortedNames returns the names of the members and of the ring's owners,
// sorted, without duplicates.
func sortedNames(members []memberJSON, owners []string) []string {
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
func colorsOf(members []memberJSON, owners []string) map[string]string {
	colors := make(map[string]string)
	for i, name := range sortedNames(members, owners) {
		colors[name] = palette[i%len(palette)]
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

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, s.pageData()); err != nil {
		s.log.Error("cannot render the status page", "err", err)
		writeError(w, http.StatusInternalServerError, "cannot render the status page")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	_, _ = buf.WriteTo(w)
}
