package meshcache

import "sync"

// flightID names a flight: its kind, the group's epoch when it started,
// and its key. A struct key (instead of one string of the three) costs no
// allocation per lookup.
type flightID struct {
	kind  byte
	epoch uint64
	key   string
}

// A call is one flight. Its leader sets res, then closes done; waiters read
// res only after done is closed.
type call struct {
	done chan struct{}
	res  flightResult
}

// flightTable shares one call among the concurrent callers of a flightID,
// like x/sync/singleflight's DoChan but without its per-call channel,
// result boxing and string key: two allocations per flight, not eight.
type flightTable struct {
	mu sync.Mutex // guards m
	m  map[flightID]*call
}

// join returns id's call in flight and false, or a new call and true: the
// caller leads it and must call finish exactly once.
func (t *flightTable) join(id flightID) (*call, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.m[id]; c != nil {
		return c, false
	}
	if t.m == nil {
		t.m = make(map[flightID]*call)
	}
	c := &call{done: make(chan struct{})}
	t.m[id] = c
	return c, true
}

// finish hands r to c's waiters and lets later callers of id start a new
// call.
func (t *flightTable) finish(id flightID, c *call, r flightResult) {
	t.mu.Lock()
	if t.m[id] == c {
		delete(t.m, id)
	}
	t.mu.Unlock()
	c.res = r
	close(c.done)
}

// forget makes later callers of id start a new call; the one in flight
// still answers its waiters.
func (t *flightTable) forget(id flightID) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}
