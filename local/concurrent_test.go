package local

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fenceBook records, per tier, the newest sequence returned by a completed
// invalidation of each key, each tag and of the whole tier.
type fenceBook struct {
	key   [2][]atomic.Uint64
	tag   [2][]atomic.Uint64
	clear [2]atomic.Uint64
}

const (
	raceKeys = 32
	raceTags = 4
)

func raceKey(i int) string { return fmt.Sprint("key-", i) }
func raceTag(i int) string { return fmt.Sprint("tag-", i%raceTags) }

// raceTagsOf returns key i's tags: the upper half of the keys is untagged.
func raceTagsOf(i int) []string {
	if i >= raceKeys/2 {
		return nil
	}
	return []string{raceTag(i), "all"}
}

func tierIndex(t Tier) int {
	if t == Hot {
		return 1
	}
	return 0
}

// floor is the lowest Seq an entry for key i in tier t may have for a Get
// that starts now.
func (b *fenceBook) floor(t Tier, i int) uint64 {
	ti := tierIndex(t)
	f := max(b.key[ti][i].Load(), b.clear[ti].Load())
	if raceTagsOf(i) != nil {
		f = max(f, b.tag[ti][i%raceTags].Load())
	}
	return f
}

// invalidated is what an invalidation concerned: keys and tags by index, or
// the whole tier.
type invalidated struct {
	keys, tags []int
	clear      bool
}

// record records that an invalidation of inv in the tiers of t returned seq.
func (b *fenceBook) record(t Tier, seq uint64, inv invalidated) {
	for _, tt := range []Tier{Main, Hot} {
		if t&tt == 0 {
			continue
		}
		ti := tierIndex(tt)
		for _, k := range inv.keys {
			maxStore(&b.key[ti][k], seq)
		}
		for _, g := range inv.tags {
			maxStore(&b.tag[ti][g], seq)
		}
		if inv.clear {
			maxStore(&b.clear[ti], seq)
		}
	}
}

// TestFenceConcurrent runs Add, Get, Invalidate, InvalidateTags, Clear,
// Remove and Sweep from many goroutines and checks the fence rule: once an
// invalidation with sequence S returned, no Get that starts afterwards
// returns an entry it concerns with Seq < S, and no Add that starts
// afterwards with since < S stores. It runs with tiers bounded by bytes and
// by count (which evicts at nearly every Add).
func TestFenceConcurrent(t *testing.T) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"bytes", Config{MainBytes: 64 << 10, HotBytes: 8 << 10}},
		{"items", Config{MainItems: raceKeys / 4, HotItems: raceKeys / 8}},
	} {
		t.Run(bc.name, func(t *testing.T) {
			bc.cfg.SweepInterval = time.Millisecond
			fenceConcurrent(t, bc.cfg)
		})
	}
}

func fenceConcurrent(t *testing.T, cfg Config) {
	s := New(cfg)
	defer s.Close()
	var book fenceBook
	for ti := range 2 {
		book.key[ti] = make([]atomic.Uint64, raceKeys)
		book.tag[ti] = make([]atomic.Uint64, raceTags)
	}
	tiers := []Tier{Main, Hot}
	const (
		workers = 6
		rounds  = 1500
	)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		stored   atomic.Int64
		hits     atomic.Int64
		failf    = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if len(failures) < 10 {
				failures = append(failures, fmt.Sprintf(format, args...))
			}
		}
	)
	for w := range workers {
		// Loaders: since, (yield), Add.
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			var older [64]uint64 // sinces of earlier rounds: loads that took long
			for n := range rounds {
				i, tier := r.IntN(raceKeys), tiers[r.IntN(2)]
				since := s.Seq()
				older[n%len(older)] = since
				if r.IntN(2) == 0 {
					since = older[r.IntN(len(older))]
				}
				if r.IntN(4) == 0 {
					runtime.Gosched()
				}
				floor := book.floor(tier, i)
				value := binary.BigEndian.AppendUint64([]byte(raceKey(i)), since)
				ok := s.Add(tier, Put{Key: raceKey(i), Value: value, Tags: raceTagsOf(i), Since: since})
				if ok && since < floor {
					failf("Add(%v, %s, since %d) stored after an invalidation at %d had returned", tier, raceKey(i), since, floor)
				}
				if ok {
					stored.Add(1)
				}
			}
		})
		// Readers.
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for range rounds * 2 {
				i, tier := r.IntN(raceKeys), tiers[r.IntN(2)]
				floor := book.floor(tier, i)
				e, ok := s.Get(tier, raceKey(i))
				if !ok {
					continue
				}
				hits.Add(1)
				if e.Seq < floor {
					failf("Get(%v, %s) returned Seq %d after an invalidation at %d had returned", tier, raceKey(i), e.Seq, floor)
				}
				want := binary.BigEndian.AppendUint64([]byte(raceKey(i)), e.Seq)
				if string(e.Value) != string(want) {
					failf("Get(%v, %s) = %q, want %q", tier, raceKey(i), e.Value, want)
				}
			}
		})
		// Invalidators.
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for range rounds / 3 {
				tier := []Tier{Main, Hot, Both}[r.IntN(3)]
				switch op := r.IntN(40); {
				case op < 30:
					a, b := r.IntN(raceKeys), r.IntN(raceKeys)
					seq, _ := s.Invalidate(tier, raceKey(a), raceKey(b))
					book.record(tier, seq, invalidated{keys: []int{a, b}})
				case op < 36:
					g := r.IntN(raceTags)
					seq := s.InvalidateTags(tier, raceTag(g))
					book.record(tier, seq, invalidated{tags: []int{g}})
				case op < 37:
					seq := s.Clear(tier)
					book.record(tier, seq, invalidated{clear: true})
				case op < 39:
					s.Remove(tier, raceKey(r.IntN(raceKeys)))
				default:
					s.Sweep()
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if stored.Load() == 0 || hits.Load() == 0 {
		t.Errorf("stored %d entries and read %d hits; the test exercised nothing", stored.Load(), hits.Load())
	}
	// The counters are consistent with the contents once quiet.
	st := s.Stats()
	var items, bytes int64
	for _, tr := range []*tier{s.main, s.hot} {
		for i := range tr.shards {
			sh := &tr.shards[i]
			sh.mu.Lock()
			items += int64(sh.lru.Len())
			bytes += sh.bytes
			sh.mu.Unlock()
		}
	}
	if items != st.Items+st.HotItems || bytes != st.Bytes+st.HotBytes {
		t.Errorf("shards hold %d items, %d bytes; Stats() says %d, %d", items, bytes, st.Items+st.HotItems, st.Bytes+st.HotBytes)
	}
	if st.Bytes > s.main.bound || st.HotBytes > s.hot.bound || st.Items > s.main.maxItems || st.HotItems > s.hot.maxItems {
		t.Errorf("Stats() = %+v, over the bounds", st)
	}
}
