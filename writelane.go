package meshcache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// Write lanes: the group commit of the write path (DESIGN.md, "Scale").
//
// Every write phase sends one request to each member. A node that writes
// concurrently would send each in a frame of its own, and each member would
// read, decode and answer each. Instead, writes to one member go through
// that member's lane: while a frame to it is in flight, further writes
// queue, and go together in the next frame ([transport.Client.WriteBatch]),
// which the member applies in order, each as if it came alone. Each write
// keeps its own result. A lone write goes alone at once ([transport.Client.Write]),
// as it did before lanes existed.
//
// A lane's goroutine stays for laneIdle after its queue emptied (a new
// goroutine would start with a small stack and grow it again, a cost the
// profile showed), then ends and the lane is dropped, so members that left
// cost nothing. Close ends them and waits for them.

// maxLaneBatch bounds the writes one frame carries, and maxLaneBytes their
// keys, tags and values (a write larger than that goes alone), so that a
// batch never makes a frame too large where its writes alone would not.
const (
	maxLaneBatch = 256
	maxLaneBytes = 1 << 20
)

// writeBytes is what w adds to a frame, roughly.
func writeBytes(req transport.WriteRequest) int {
	n := 64
	for _, k := range req.Keys {
		n += len(k)
	}
	for _, t := range req.Tags {
		n += len(t)
	}
	for _, it := range req.Items {
		n += len(it.Key) + len(it.Value)
		for _, t := range it.Tags {
			n += len(t)
		}
	}
	return n
}

// laneIdle is how long a lane's goroutine waits for more writes.
const laneIdle = time.Second

// writeLanes holds the node's lanes by member address.
type writeLanes struct {
	mu     sync.Mutex // guards lanes, closed, done, and every lane's queue and running
	lanes  map[string]*writeLane
	closed bool
	done   chan struct{}  // closed by close: idle goroutines end
	wg     sync.WaitGroup // the lanes' goroutines
}

type writeLane struct {
	addr    string
	queue   []*laneWrite
	running bool          // its goroutine exists
	wake    chan struct{} // capacity 1: more writes for an idle goroutine
}

// A laneWrite is one write phase's request to one member.
type laneWrite struct {
	ctx  context.Context // the write phase's: its deadline bounds the frame
	p    *peer
	req  transport.WriteRequest
	out  chan<- laneResult // buffered for every write of the fan-out
	done atomic.Bool       // the result was sent
	// inFlight is the frame this write went in, once sent: the frame is
	// abandoned when every write in it is done. released says that this
	// write was counted off the frame (once, by finish or by sendFrame,
	// whichever sees both done and inFlight first).
	inFlight atomic.Pointer[laneFrame]
	released atomic.Bool
}

type laneResult struct {
	p    *peer
	resp transport.WriteResponse
	err  error
}

// finish sends w's result, once: the first of the member's answer, the
// write's context ending and the member leaving wins.
func (w *laneWrite) finish(resp transport.WriteResponse, err error) {
	if !w.done.CompareAndSwap(false, true) {
		return
	}
	w.out <- laneResult{p: w.p, resp: resp, err: err}
	w.release()
}

// release counts w off its frame once it is both done and in flight, and
// abandons the frame when nobody waits for it any more.
func (w *laneWrite) release() {
	f := w.inFlight.Load()
	if f == nil || !w.done.Load() || !w.released.CompareAndSwap(false, true) {
		return
	}
	if f.left.Add(-1) == 0 {
		f.cancel()
	}
}

// A laneFrame is a frame in flight: its context, and how many of its
// writes still wait for it.
type laneFrame struct {
	cancel context.CancelFunc
	left   atomic.Int32
}

// send queues w on its member's lane, starting the lane if it is idle.
func (ls *writeLanes) send(n *Node, w *laneWrite) {
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		w.finish(transport.WriteResponse{}, fmt.Errorf("meshcache: write to %s: %w", w.p.name, ErrClosed))
		return
	}
	if ls.lanes == nil {
		ls.lanes = make(map[string]*writeLane)
		ls.done = make(chan struct{})
	}
	l := ls.lanes[w.p.addr]
	if l == nil {
		l = &writeLane{addr: w.p.addr, wake: make(chan struct{}, 1)}
		ls.lanes[w.p.addr] = l
	}
	l.queue = append(l.queue, w)
	start := !l.running
	l.running = true
	if start {
		ls.wg.Add(1)
	}
	done := ls.done
	ls.mu.Unlock()
	if start {
		go ls.run(n, l, done)
	} else {
		select {
		case l.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// run sends l's queue, a frame at a time; when it is empty, it waits up to
// laneIdle for more, then ends.
func (ls *writeLanes) run(n *Node, l *writeLane, done <-chan struct{}) {
	defer ls.wg.Done()
	var idle *time.Timer
	for {
		ls.mu.Lock()
		batch := l.queue
		size := 0
		for i, w := range batch {
			size += writeBytes(w.req)
			if i > 0 && (i == maxLaneBatch || size > maxLaneBytes) {
				batch = batch[:i:i]
				break
			}
		}
		l.queue = l.queue[len(batch):]
		if len(batch) == 0 {
			l.queue = nil
		}
		ls.mu.Unlock()
		if len(batch) > 0 {
			ls.sendFrame(n, l.addr, batch)
			continue
		}
		if idle == nil {
			idle = time.NewTimer(laneIdle)
			defer idle.Stop()
		} else {
			idle.Reset(laneIdle)
		}
		select {
		case <-l.wake:
			continue
		case <-idle.C:
		case <-done:
		}
		ls.mu.Lock()
		if len(l.queue) > 0 && !ls.closed {
			ls.mu.Unlock()
			continue // queued just as the wait ended
		}
		l.running = false
		delete(ls.lanes, l.addr)
		rest := l.queue // only when closed
		l.queue = nil
		ls.mu.Unlock()
		for _, w := range rest {
			w.finish(transport.WriteResponse{}, fmt.Errorf("meshcache: write to %s: %w", w.p.name, ErrClosed))
		}
		return
	}
}

// sendFrame sends the writes of batch that still wait, in one frame.
func (ls *writeLanes) sendFrame(n *Node, addr string, batch []*laneWrite) {
	live := batch[:0:0]
	var deadline time.Time
	for _, w := range batch {
		if w.done.Load() {
			continue // its write gave up, or its member left, while it queued
		}
		if d, ok := w.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
		live = append(live, w)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		// Alone: under its own context, as if there were no lane.
		w := live[0]
		resp, err := n.client.Write(w.ctx, addr, w.req)
		w.finish(resp, err)
		return
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(n.ccfg.writeTimeout)
	}
	// The frame outlives any one write's context (others wait for it too)
	// but not the node, nor the latest deadline among its writes, nor the
	// moment the last of them stops waiting.
	ctx, cancel := context.WithDeadline(n.closing, deadline)
	defer cancel()
	f := &laneFrame{cancel: cancel}
	f.left.Store(int32(len(live)))
	for _, w := range live {
		w.inFlight.Store(f)
		w.release() // it may have finished since the loop above
	}
	if f.left.Load() == 0 {
		return // nobody waits
	}
	reqs := make([]transport.WriteRequest, len(live))
	for i, w := range live {
		reqs[i] = w.req
	}
	n.stats.writeBatches.Add(1)
	results, err := n.client.WriteBatch(ctx, addr, reqs)
	for i, w := range live {
		if err != nil {
			w.finish(transport.WriteResponse{}, err)
		} else {
			w.finish(results[i].WriteResponse, results[i].Err)
		}
	}
}

// close makes later sends fail with ErrClosed and waits for the lanes'
// goroutines (the caller closes the client first, so frames in flight end).
func (ls *writeLanes) close() {
	ls.mu.Lock()
	ls.closed = true
	if ls.done != nil {
		close(ls.done)
	}
	ls.mu.Unlock()
	ls.wg.Wait()
}
