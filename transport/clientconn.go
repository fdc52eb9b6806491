package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// writeBatchBytes is how much the writer gathers from its queue before a
// write (at least one frame, whatever its size).
const writeBatchBytes = 64 << 10

// clientConn is one connection to a peer, shared by every request to it.
//
// A caller registers its call (pending, by id) and then, when the
// connection is quiet, does its own I/O, as a bare client would: with
// nobody writing, it writes its frame itself (without blocking: what the
// socket does not take at once goes to the writer goroutine), and with
// nobody reading, it takes the read role and reads frames, handing each to
// its call, until its own answer comes. On a busy connection it queues its
// frame for the writer goroutine and waits for its answer, which whoever
// holds the read role hands it. Either way a caller waits on its own ctx,
// never on a write (see readOwn for how a reading caller still does).
// This spares the one-caller round trip two goroutine hand-offs, each of
// which woke a thread (BENCHMARKS.md, "The remote hit").
//
// The writer goroutine copies queued frames into its batch buffer under mu
// and writes the batch with the client's write timeout; a frame copied is
// written whole or the connection is closed, so the stream stays in step.
// A caller that gives up removes its call from pending; the writer skips a
// queued id that is no longer pending, so a frame not yet copied is never
// sent.
//
// The read role passes between callers and the connection's reader
// goroutine (readLoop): a caller gives it up when its answer came, to the
// reader goroutine if other calls still wait; the reader goroutine gives it
// up when no call waits. While pending is not empty someone holds the role.
// So an idle connection is usually read by nobody (the reader goroutine may
// stay in a read after the calls it read for were withdrawn), and a peer's
// close goes unseen: a request that comes stateAfter or more after the last
// one first asks the kernel for the connection's state, and if the peer
// closed it, goes out on a new connection (see send). A request sooner than
// that can still be the first to see the close, and fails, as one could
// when the close arrived just after it was written. Raw sockets are built
// for Linux only: on a TLS connection, or on another platform, the reader
// goroutine holds the read role for good and the writer goroutine writes
// every frame, as before callers did their own I/O.
//
// With ClientConfig.SilenceTimeout, a watcher goroutine pings a peer that
// is slow to answer and closes the connection if the peer sends nothing at
// all for that long (see liveness.go).
type clientConn struct {
	c          *Client
	addr       string
	born       time.Time // base of silentSince
	cancelDial context.CancelFunc
	ready      chan struct{} // closed when the dial finished; then dialErr and nc are fixed
	dialErr    error
	dead       atomic.Bool    // set by close
	stop       chan struct{}  // closed by close: the writer, reader and watcher return
	wake       chan struct{}  // capacity 1: ids were queued
	readKick   chan struct{}  // capacity 1: the read role was handed to the reader goroutine
	wg         sync.WaitGroup // the writer goroutine
	reads      atomic.Uint64  // frames read so far
	// silentSince is 1 + the time since born at which the writer (or a
	// caller writing its own frame) first wrote after the last frame
	// read, or 0 if nothing was written since (see heard, writeLoop and
	// writeOwn).
	silentSince atomic.Int64

	// Liveness, with SilenceTimeout only (see liveness.go). Times are
	// cc.now() values; 0 means never.
	readAt       atomic.Int64  // when bytes last arrived
	writingSince atomic.Int64  // when the writer started the chunk it is writing; 0 when not writing
	progressAt   atomic.Int64  // when the writer last finished a chunk of a write of several
	pingID       atomic.Uint64 // id of the last ping the writer took
	watchWake    chan struct{} // capacity 1: send woke the parked watcher

	// Fixed once ready is closed.
	fr  *frameReader // read by the holder of the read role only
	raw *rawSocket   // writes without blocking, tells a peer's close; nil if the conn cannot (TLS, not Linux)

	// Owned by the holder of the read role.
	pong wirepb.Envelope // answers to pings are decoded into it

	mu          sync.Mutex // guards nc (fixed once ready is closed), pending, queue, err, pingQueued, watchParked, reading, writing, carry, lastSend, raw's state checks, and call.sent, call.readsAtSend and call.sentAt of pending calls
	nc          net.Conn
	pending     map[uint64]*call // requests queued or sent, by id
	queue       []uint64         // ids waiting for the writer, oldest first
	err         error            // why the connection closed; nil while open
	pingQueued  uint64           // id of a ping for the writer to send first; 0 if none
	watchParked bool             // the watcher waits for a request: the next send wakes it
	reading     role             // who reads frames
	writing     role             // who writes frames
	carry       []byte           // the rest of a caller's frame that the socket did not take: the writer writes it first
	lastSend    time.Time        // when the last request was registered, on a raw socket
}

// role says who holds a connection's read or write side.
type role uint8

const (
	roleNone   role = iota
	roleCaller      // a caller, for its own request
	roleGo          // the connection's reader or writer goroutine
)

const (
	// selfWriteBytes is the largest frame a caller writes itself.
	selfWriteBytes = writeBatchBytes
	// stateAfter is how long a connection must have had no request for
	// the next one to ask first whether the peer closed it (see send).
	stateAfter = time.Millisecond
)

func newClientConn(c *Client, addr string, cancelDial context.CancelFunc) *clientConn {
	return &clientConn{
		c:          c,
		addr:       addr,
		born:       time.Now(),
		cancelDial: cancelDial,
		ready:      make(chan struct{}),
		stop:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
		readKick:   make(chan struct{}, 1),
		watchWake:  make(chan struct{}, 1),
		pending:    make(map[uint64]*call),
	}
}

// send registers cl as waiting for a response and either has the caller
// write its frame (cl.wbuf) itself, when nobody writes and nothing is
// queued (writeSelf: the caller must then call writeOwn), or queues it for
// the writer. readSelf reports that the caller took the read role (it must
// then call readOwn). It fails if the connection closed; also, with no
// request outstanding and none sent for stateAfter, if the kernel says the
// peer closed it (no caller reads an idle connection, and a request sent on
// it would fail where one on a new connection would not): then it closes cc
// first.
func (cc *clientConn) send(cl *call) (writeSelf, readSelf bool, err error) {
	id := cl.env.Id
	wake := false
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return false, false, err
	}
	if cc.raw != nil {
		now := time.Now()
		if len(cc.pending) == 0 && now.Sub(cc.lastSend) > stateAfter && cc.raw.peerClosed() {
			cc.mu.Unlock()
			err := fmt.Errorf("%w: %s: closed by the peer", ErrUnavailable, cc.addr)
			cc.close(err)
			return false, false, err
		}
		cc.lastSend = now
	}
	cc.pending[id] = cl
	if cc.raw != nil && cc.writing == roleNone && len(cc.carry) == 0 && len(cc.queue) == 0 && cc.pingQueued == 0 && len(cl.wbuf) <= selfWriteBytes {
		cc.writing, writeSelf = roleCaller, true
		cc.markSent(cl, cc.sentTime())
	} else {
		cl.sent = false
		cc.queue = append(cc.queue, id)
		wake = true
	}
	if cc.reading == roleNone {
		cc.reading, readSelf = roleCaller, true
	}
	unpark := cc.watchParked
	cc.watchParked = false
	cc.mu.Unlock()
	if wake {
		cc.wakeWriter()
	}
	if unpark {
		select {
		case cc.watchWake <- struct{}{}:
		default:
		}
	}
	return writeSelf, readSelf, nil
}

// wakeWriter tells the writer goroutine to look at the queue.
func (cc *clientConn) wakeWriter() {
	select {
	case cc.wake <- struct{}{}:
	default: // the writer is already due to look at the queue
	}
}

// sentTime is the send time of a request written now, for the watcher: 0
// without SilenceTimeout.
func (cc *clientConn) sentTime() int64 {
	if cc.c.silence > 0 {
		return cc.now()
	}
	return 0
}

// markSent records that cl's frame is being written at time at. cc.mu must
// be held.
func (cc *clientConn) markSent(cl *call, at int64) {
	cl.sent, cl.readsAtSend, cl.sentAt = true, cc.reads.Load(), at
}

// writeOwn writes cl's frame for a caller that send made the writer. It
// does not block: what the socket does not take at once is left for the
// writer goroutine, which writes it before anything else. A write error
// closes the connection (and so fails cl).
func (cc *clientConn) writeOwn(cl *call) {
	if cc.silentSince.Load() == 0 {
		cc.silentSince.CompareAndSwap(0, int64(time.Since(cc.born))+1)
	}
	n, err := cc.raw.write(cl.wbuf)
	if err != nil {
		cc.close(fmt.Errorf("%w: %s: write: %w", ErrUnavailable, cc.addr, err))
		return
	}
	cc.mu.Lock()
	wake := len(cc.queue) > 0 || cc.pingQueued != 0
	cc.writing = roleNone
	if n < len(cl.wbuf) {
		// The rest goes before any other frame: the writer takes it
		// over, with the write role.
		cc.carry = append(cc.carry, cl.wbuf[n:]...)
		cc.writing = roleGo
		cc.c.carries.Add(1)
		wake = true
	}
	cc.mu.Unlock()
	if wake {
		cc.wakeWriter()
	}
}

// withdraw removes cl, whose caller gave up, from the requests waiting for
// a response. waiting is false if cl was no longer registered: its
// response or failure is being delivered. Otherwise silent reports whether
// cl's frame was written and nothing has been read since, and then
// silentFor how long the connection has gone without reading anything
// since a request was written.
func (cc *clientConn) withdraw(cl *call) (waiting, silent bool, silentFor time.Duration) {
	cc.mu.Lock()
	_, waiting = cc.pending[cl.env.Id]
	delete(cc.pending, cl.env.Id)
	sent, readsAtSend := cl.sent, cl.readsAtSend
	cc.mu.Unlock()
	if !waiting || !sent || cc.reads.Load() != readsAtSend {
		return waiting, false, 0
	}
	if since := cc.silentSince.Load(); since != 0 {
		silentFor = time.Since(cc.born) - time.Duration(since-1)
	}
	return true, true, silentFor
}

// heard records that a frame was read. The reader calls it for each one.
func (cc *clientConn) heard() {
	cc.reads.Add(1)
	if cc.silentSince.Load() != 0 {
		cc.silentSince.Store(0)
	}
}

// writeLoop writes queued frames to nc until the connection closes. A
// write error or timeout closes the connection.
func (cc *clientConn) writeLoop(nc net.Conn) {
	var (
		buf      []byte
		deadline time.Time // nc's write deadline
		timeout  = cc.c.writeTO
		watched  = cc.c.silence > 0
	)
	for {
		select {
		case <-cc.stop:
			return
		case <-cc.wake:
		}
		for {
			var at int64 // the requests' send time, for the watcher
			if watched {
				at = cc.now()
			}
			buf = cc.takeBatch(buf[:0], at)
			if len(buf) == 0 {
				break
			}
			// The deadline is moved only when less than half the timeout
			// is left: setting it costs a lock in the runtime poller.
			now := time.Now()
			if deadline.Sub(now) < timeout/2 {
				deadline = now.Add(timeout)
				if err := nc.SetWriteDeadline(deadline); err != nil {
					cc.close(fmt.Errorf("%w: %s: write: %w", ErrUnavailable, cc.addr, err))
					return
				}
			}
			if cc.silentSince.Load() == 0 {
				cc.silentSince.CompareAndSwap(0, int64(now.Sub(cc.born))+1)
			}
			var err error
			if watched {
				err = cc.writeWatched(nc, buf)
			} else {
				_, err = nc.Write(buf)
			}
			if err != nil {
				cc.close(fmt.Errorf("%w: %s: write: %w", ErrUnavailable, cc.addr, err))
				return
			}
			if cap(buf) > keepFrameBytes {
				buf = nil // a huge frame passed; do not pin its buffer
			}
		}
	}
}

// takeBatch appends to buf a queued ping, then the frames of queued
// requests whose callers still wait, up to writeBatchBytes (at least one
// frame), marks them sent at time at and removes them from the queue with
// any abandoned ids before them.
func (cc *clientConn) takeBatch(buf []byte, at int64) []byte {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.writing == roleCaller {
		return buf // a caller is writing; it wakes the writer when it is done
	}
	if len(cc.carry) > 0 {
		buf = append(buf, cc.carry...)
		cc.carry = cc.carry[:0]
	}
	if id := cc.pingQueued; id != 0 {
		cc.pingQueued = 0
		cc.pingID.Store(id)
		cc.c.pings.Add(1)
		buf = appendPingFrame(buf, id)
	}
	reads := cc.reads.Load()
	i := 0
	for ; i < len(cc.queue); i++ {
		cl := cc.pending[cc.queue[i]]
		if cl == nil {
			continue // abandoned (or answered early by a confused peer)
		}
		if len(buf) > 0 && len(buf)+len(cl.wbuf) > writeBatchBytes {
			break
		}
		buf = append(buf, cl.wbuf...)
		cl.sent, cl.readsAtSend, cl.sentAt = true, reads, at
	}
	n := copy(cc.queue, cc.queue[i:])
	clear(cc.queue[n:])
	cc.queue = cc.queue[:n]
	cc.writing = roleNone
	if len(buf) > 0 {
		cc.writing = roleGo // until the writer takes its next batch
	}
	return buf
}

// close closes the connection for reason err, fails every pending request
// with err, stops the writer and forgets the connection. Only the first
// call has an effect. It does not wait for the connection's goroutines:
// Client.Close does.
func (cc *clientConn) close(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	cc.dead.Store(true)
	pending, nc := cc.pending, cc.nc
	cc.pending, cc.queue = nil, nil
	cc.mu.Unlock()

	close(cc.stop)
	cc.cancelDial()
	if nc != nil {
		nc.Close()
	}
	for _, cl := range pending {
		cl.err = err
		cl.done <- struct{}{}
	}
	c := cc.c
	c.mu.Lock()
	if c.conns[cc.addr] == cc {
		delete(c.conns, cc.addr)
	}
	c.mu.Unlock()
}

// call is one request in flight, pooled with everything it needs so that a
// round trip allocates little: the request envelope with a slot for every
// request kind, the buffers of both frames, the response envelope and a
// timer for calls without a deadline.
type call struct {
	done chan struct{} // one send per round trip: response or failure
	err  error         // set before done: the connection failed
	cc   *clientConn

	sent        bool   // the frame is being or was written (by the writer, or by the caller); guarded by cc.mu
	readsAtSend uint64 // cc.reads when it was taken for writing; guarded by cc.mu
	sentAt      int64  // cc.now() when it was taken for writing, with SilenceTimeout; guarded by cc.mu

	timer    *time.Timer      // bounds a call whose ctx has no deadline (or a later one than timeout); stopped by release
	expired  <-chan time.Time // timer's channel while it runs for this call; nil otherwise
	timeout  time.Duration    // if positive, bounds the call (GetWithin)
	deadline time.Time        // the request's deadline, set by prepare

	fastGet bool       // the request is getReq, encoded by the Get fast path
	getReq  GetRequest // with fastGet

	env      wirepb.Envelope // the request, unless fastGet
	get      wirepb.Envelope_GetRequest
	getMsg   wirepb.GetRequest
	many     wirepb.Envelope_GetManyRequest
	manyMsg  wirepb.GetManyRequest
	peek     wirepb.Envelope_PeekRequest
	peekMsg  wirepb.PeekRequest
	write    wirepb.Envelope_WriteRequest
	writeMsg wirepb.WriteRequest
	lease    wirepb.Envelope_LeaseRequest
	leaseMsg wirepb.LeaseRequest
	hand     wirepb.Envelope_HandOverRequest
	handMsg  wirepb.HandOverRequest
	a        arena
	wbuf     []byte

	rbuf []byte
	resp wirepb.Envelope
}

var callPool = sync.Pool{New: func() any {
	cl := &call{done: make(chan struct{}, 1)}
	cl.get.GetRequest = &cl.getMsg
	cl.many.GetManyRequest = &cl.manyMsg
	cl.peek.PeekRequest = &cl.peekMsg
	cl.write.WriteRequest = &cl.writeMsg
	cl.lease.LeaseRequest = &cl.leaseMsg
	cl.hand.HandOverRequest = &cl.handMsg
	return cl
}}

func getCall() *call {
	cl := callPool.Get().(*call)
	cl.a.reset()
	return cl
}

// release returns cl to the pool. The caller must own cl: its request is no
// longer registered and nothing is being delivered to it.
func (cl *call) release() {
	cl.err, cl.cc = nil, nil
	if cl.expired != nil {
		cl.timer.Stop()
		cl.expired = nil
	}
	cl.sent, cl.readsAtSend, cl.sentAt = false, 0, 0
	cl.fastGet, cl.getReq, cl.timeout, cl.deadline = false, GetRequest{}, 0, time.Time{}
	cl.env.Body, cl.env.Trace = nil, nil
	cl.getMsg.Group, cl.getMsg.Key = nil, nil
	cl.manyMsg.Keys = nil
	proto.Reset(&cl.writeMsg)
	proto.Reset(&cl.leaseMsg)
	proto.Reset(&cl.handMsg)
	proto.Reset(&cl.resp)
	if cap(cl.wbuf) > keepFrameBytes {
		cl.wbuf = nil
	}
	if cap(cl.rbuf) > keepFrameBytes {
		cl.rbuf = nil
	}
	if cap(cl.a.b) > keepFrameBytes {
		cl.a = arena{}
	}
	callPool.Put(cl)
}
