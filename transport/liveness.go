package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// ErrPeerSilent: nothing at all arrived from the peer for
// ClientConfig.SilenceTimeout while a request waited on it (or while
// dialing it): the peer is paused, dead without a reset, or cut off, as
// far as this client can tell. Errors that wrap it also wrap
// [ErrUnavailable], so a caller that falls back on ErrUnavailable does;
// one that tests for ErrPeerSilent may also treat the peer as suspect.
var ErrPeerSilent = errors.New("transport: peer silent")

// Liveness, with ClientConfig.SilenceTimeout (T) set.
//
// A connection is alive while bytes arrive on it. Its watcher goroutine
// (watchLoop) fails it, closing it with an error wrapping ErrPeerSilent,
// when either
//
//   - a request is outstanding that was sent (taken for writing) at
//     least T ago, and nothing has arrived for T, nor has a frame larger
//     than one write chunk made progress (see below); or
//   - one write chunk has been blocked for T with nothing arriving: the
//     peer does not read (a live server's reader never stops), and
//     requests queued behind the write would otherwise wait for
//     WriteTimeout.
//
// So that a live peer whose handlers are slow is not failed, the watcher
// pings it: when a sent request is outstanding and nothing has arrived for
// T/pingDivisor (since the later of that request's send, the last bytes
// received and the last ping), it queues a Ping frame, which the writer
// sends before any request (after only the rest of a frame a caller
// began writing), and which the server answers on its read loop
// at once, whatever its handlers are doing. A paused peer answers nothing,
// so its requests fail about T after they were sent. No ping is sent on
// a connection with nothing outstanding, nor while answers keep arriving
// (fast requests never cause one), and an idle watcher is parked until
// the next request.
//
// A frame larger than writeBatchBytes is written in chunks of that size;
// each chunk completed counts as progress, so that a large request that
// takes longer than T to cross a slow link to a live peer is not mistaken
// for silence (the ping behind it cannot overtake it). A paused peer's
// socket buffers take a few MiB at most, and then the write blocks. The
// kernel lets a blocked write go on only once a good part of the send
// buffer drained (half of it, on Linux), so progress is seen every half
// send buffer: about a round trip when the kernel sizes the buffer to the
// link, but on a link slower than half the send buffer per SilenceTimeout
// (2 MiB/s for a 4 MiB buffer and 1s) a large frame can still be taken
// for silence.
const (
	pingDivisor = 3
	// minWatchWait is the shortest the watcher sleeps, whatever T.
	minWatchWait = time.Millisecond
)

// now returns the time since cc was created, plus one, so that 0 can mean
// "never" in the connection's liveness timestamps.
func (cc *clientConn) now() int64 {
	return int64(time.Since(cc.born)) + 1
}

// liveReader records in cc.readAt when bytes arrive.
type liveReader struct {
	r  io.Reader
	cc *clientConn
}

func (lr *liveReader) Read(p []byte) (int, error) {
	n, err := lr.r.Read(p)
	if n > 0 {
		lr.cc.readAt.Store(lr.cc.now())
	}
	return n, err
}

// writeWatched writes buf to nc for a connection with liveness: in chunks
// of writeBatchBytes, recording the start of each in cc.writingSince
// (cleared at the end) and, for a buf of several chunks, the end of each
// in cc.progressAt.
func (cc *clientConn) writeWatched(nc net.Conn, buf []byte) error {
	defer cc.writingSince.Store(0)
	several := len(buf) > writeBatchBytes
	for len(buf) > 0 {
		n := min(len(buf), writeBatchBytes)
		cc.writingSince.Store(cc.now())
		if _, err := nc.Write(buf[:n]); err != nil {
			return err
		}
		buf = buf[n:]
		if several {
			cc.progressAt.Store(cc.now())
		}
	}
	return nil
}

// watchLoop is the connection's watcher (see the liveness comment above),
// started with the writer when the client has a SilenceTimeout. It returns
// when the connection closes, which it does itself on silence.
func (cc *clientConn) watchLoop() {
	timer := time.NewTimer(cc.c.silence / pingDivisor)
	defer timer.Stop()
	var lastPing int64 // when this watcher last queued a ping
	for {
		select {
		case <-cc.stop:
			return
		case <-timer.C:
		case <-cc.watchWake:
		}
		wait, err := cc.checkLiveness(&lastPing)
		if err != nil {
			cc.c.log.Warn("transport: closing connection", "peer", cc.addr, "err", err)
			cc.close(err)
			return
		}
		if wait > 0 {
			timer.Reset(wait)
		} else {
			timer.Stop() // parked: send wakes the watcher
		}
	}
}

// checkLiveness looks at cc once: it returns an error wrapping
// ErrPeerSilent if the connection is silent, else how long to wait before
// looking again (0: nothing is outstanding, and the watcher is parked
// until send wakes it). It queues a ping when one is due, updating
// *lastPing.
func (cc *clientConn) checkLiveness(lastPing *int64) (time.Duration, error) {
	silence := int64(cc.c.silence)
	interval := silence / pingDivisor
	now := cc.now()
	heard := max(cc.readAt.Load(), cc.progressAt.Load())

	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return 0, nil // closed: stop is closed too
	}
	var oldest int64 // the earliest send of a request still outstanding; 0: none sent
	for _, cl := range cc.pending {
		if cl.sentAt != 0 && (oldest == 0 || cl.sentAt < oldest) {
			oldest = cl.sentAt
		}
	}
	writing := cc.writingSince.Load()
	if len(cc.pending) == 0 && writing == 0 {
		cc.watchParked = true
		cc.mu.Unlock()
		return 0, nil
	}
	wait := interval // nothing sent yet: look again once it may have been
	ping := false
	if oldest != 0 {
		ref := max(oldest, heard)
		if now-ref >= silence {
			cc.mu.Unlock()
			return 0, fmt.Errorf("%w: %s: nothing received for %v: %w", ErrUnavailable, cc.addr, time.Duration(now-ref).Round(time.Millisecond), ErrPeerSilent)
		}
		pingAt := max(ref, *lastPing) + interval
		if now >= pingAt {
			if cc.pingQueued == 0 { // else the writer has yet to send the last one
				cc.pingQueued = cc.c.nextID.Add(1)
				ping = true
			}
			*lastPing, pingAt = now, now+interval
		}
		wait = min(ref+silence, pingAt) - now
	}
	cc.mu.Unlock()
	if writing != 0 {
		ref := max(writing, heard)
		if now-ref >= silence {
			return 0, fmt.Errorf("%w: %s: write blocked and nothing received for %v: %w", ErrUnavailable, cc.addr, time.Duration(now-ref).Round(time.Millisecond), ErrPeerSilent)
		}
		wait = min(wait, ref+silence-now)
	}
	if ping {
		select {
		case cc.wake <- struct{}{}:
		default: // the writer is already due to look at the queue
		}
	}
	return max(time.Duration(wait), minWatchWait), nil
}

// checkPong checks that body, the frame a client read with the id of its
// last ping, is a pong. Errors wrap ErrMalformed: a peer that answers a
// ping with anything else does not speak the protocol.
func checkPong(body []byte, env *wirepb.Envelope) error {
	err := unmarshalEnvelope(body, env)
	if err == nil {
		if _, ok := env.Body.(*wirepb.Envelope_Pong); !ok || env.ErrorCode != wirepb.Code_CODE_OK {
			err = fmt.Errorf("%w: answer to ping %d is not a pong (body %T, code %v)", ErrMalformed, env.Id, env.Body, env.ErrorCode)
		}
	}
	env.Reset()
	return err
}

// Field numbers of the liveness bodies in wire.proto's Envelope.
const (
	fieldEnvPing = 20
	fieldEnvPong = 21
)

// appendPingFrame appends a complete frame holding a Ping envelope with
// id, byte for byte what marshalFrame produces (TestFastEncodersMatchProto).
func appendPingFrame(b []byte, id uint64) []byte {
	return appendEmptyBodyFrame(b, id, fieldEnvPing)
}

// appendPongFrame appends a complete frame holding a Pong envelope with id.
func appendPongFrame(b []byte, id uint64) []byte {
	return appendEmptyBodyFrame(b, id, fieldEnvPong)
}

func appendEmptyBodyFrame(b []byte, id uint64, body protowire.Number) []byte {
	n := sizeVarintField(fieldEnvID, id) + protowire.SizeTag(body) + protowire.SizeBytes(0)
	b = appendUint32(b, uint32(n))
	b = appendVarintField(b, fieldEnvID, id)
	b = protowire.AppendTag(b, body, protowire.BytesType)
	return protowire.AppendVarint(b, 0)
}
