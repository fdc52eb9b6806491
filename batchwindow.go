package meshcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The batch window (WithBatchWindow): single loads of distinct keys that
// start within d of each other on a node are loaded by one LoadMany call,
// as a DataLoader does. Each key keeps its own flight, fence and result:
// the window only replaces the loader call inside loadAndStore, after the
// key's fence (since) was noted and its L2 read missed. The batch's
// LoadMany starts when the window closes, after every key in it noted its
// fence, so a write that reaches this node after a key's fence refuses
// what the batch returns for it, as for a single load.

// DefaultMaxBatch is [WithMaxBatch] when it is not given.
const DefaultMaxBatch = 256

// A loadWindow gathers the keys of one group's loads into batches.
type loadWindow struct {
	g   *Group
	d   time.Duration
	max int

	mu   sync.Mutex // guards open
	open *loadBatch // gathering keys; nil when no window is open
}

// A loadBatch is the keys of one window and, once done is closed, their
// items or the batch's error.
type loadBatch struct {
	keys  []string
	has   map[string]bool // the keys, so that a key is asked for once
	timer *time.Timer
	done  chan struct{}
	items map[string]Item
	err   error
}

// load returns key's item through the current window, opening one if none
// is open. It waits for the batch or ctx (the load's context).
func (w *loadWindow) load(ctx context.Context, key string) (Item, error) {
	w.mu.Lock()
	b := w.open
	if b == nil {
		// The batch is a load of the node's from now on: Close waits for
		// the timer's goroutine as for any other load.
		if !w.g.node.startLoad() {
			w.mu.Unlock()
			return Item{}, ErrClosed
		}
		b = &loadBatch{done: make(chan struct{}), has: make(map[string]bool)}
		w.open = b
		b.timer = time.AfterFunc(w.d, func() { w.close(b) })
	}
	// A key can be in two flights at once (one cut off by an invalidation,
	// or a load and a stand-in load): the batch asks for it once.
	if !b.has[key] {
		b.has[key] = true
		b.keys = append(b.keys, key)
	}
	full := len(b.keys) >= w.max
	w.mu.Unlock()
	if full {
		w.close(b)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return Item{}, ctx.Err()
	}
	if b.err != nil {
		return Item{}, b.err
	}
	it, ok := b.items[key]
	if !ok {
		return Item{}, ErrNotFound
	}
	return it, nil
}

// close closes b's window, if it is still the open one, and loads its keys
// (on the calling goroutine: the timer's, or the caller that filled it).
func (w *loadWindow) close(b *loadBatch) {
	w.mu.Lock()
	if w.open != b {
		w.mu.Unlock()
		return // closed already (full, then the timer fired)
	}
	w.open = nil
	w.mu.Unlock()
	b.timer.Stop()
	g := w.g
	defer g.node.loads.Done() // registered when b opened
	defer close(b.done)
	ctx, cancel := g.loadContext(context.Background())
	defer cancel()
	g.stats.batchLoads.Add(1)
	start := time.Now()
	// Set until LoadMany returns: a batch loader that calls runtime.Goexit
	// fails its keys instead of reporting them not found.
	b.err = fmt.Errorf("meshcache: batch of %d keys in group %s: the batch loader did not return: %w", len(b.keys), g.name, ErrLoadFailed)
	items, err := g.callBatchLoader(ctx, b.keys)
	b.err = nil
	g.stats.loadLatency.observe(time.Since(start))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			// Not-found is per key (absent from the map): a batch that
			// fails with it failed, and caches nothing as missing.
			err = fmt.Errorf("meshcache: batch of %d keys in group %s: %v", len(b.keys), g.name, err)
		}
		b.err = err
		return
	}
	if ctx.Err() != nil {
		// As for a single load: what returns after the load timeout is
		// handed to the callers but not cached (see storeLoaded). The
		// callers' own contexts carry the same deadline.
		g.log.Warn("meshcache: batch loader returned after its context ended", "keys", len(b.keys))
	}
	b.items = items
}
