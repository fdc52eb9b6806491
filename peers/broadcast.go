package peers

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// Envelope of a broadcast payload on the wire (protocol 2):
//
//	byte     envelope version (2)
//	byte     hops left: how many more times it may be relayed
//	8 bytes  origin: boot id of the sending Cluster, big endian
//	8 bytes  sequence number at the origin, big endian
//	...      payload
//
// Version 1 had no hop count; nodes that speak it have peers protocol 1 and
// are refused as members, and a receiver drops envelopes of any version but
// its own.
const (
	envelopeVersion = 2
	envelopeHeader  = 1 + 1 + 8 + 8
	// maxHops is the hop count a payload starts with. Receivers drop
	// duplicates by id, but they remember only the last maxSeen ids; the
	// hop count bounds how long a payload can keep circulating when its
	// id has been forgotten, so it cannot be relayed forever. Each hop
	// multiplies the copies by the retransmit fan-out (at least 8), so
	// 4 hops reach thousands of members; 8 leaves ample margin.
	maxHops = 8
)

const (
	// maxQueued bounds the transmit queue; the oldest broadcasts are
	// dropped beyond it (they would be stale anyway).
	maxQueued = 4096
	// maxSeen is how many message ids each node remembers to drop
	// duplicates. A duplicate arriving after that many newer messages is
	// delivered again.
	maxSeen = 8192
	// minRetransmitMult floors the retransmit multiplier of broadcasts.
	// Each node sends a payload to L = mult*ceil(log10(N+1)) random peers,
	// and every receiver relays it the same way, so a member misses it with
	// probability about (1-L/(N-1))^(N-1), roughly e^-L. memberlist's
	// presets (2 local, 4 LAN and WAN) give L = 4 below 10 members: a miss
	// in about 1 of 250 broadcasts at 9 members. With 8, every sender
	// reaches every peer directly up to 9 members, and e^-L stays below
	// 1e-6 beyond. The cost is 8 to 24 piggybacked copies per node per
	// payload, fine for a fallback path.
	minRetransmitMult = 8
	// inboxSize bounds payloads waiting for OnMessage.
	inboxSize = 4096
	// Per-packet overheads memberlist subtracts from UDPBufferSize before
	// it asks for user broadcasts (net.go, state.go gossip in v0.7.0):
	// compound header 2, compound entry 2, user message type 1, label 0,
	// and encryption at most 45.
	gossipOverhead  = 2 + 2 + 1
	encryptOverhead = 45
)

// msgID identifies one broadcast fleet-wide.
type msgID struct{ origin, seq uint64 }

// broadcaster holds the broadcast state of a Cluster.
type broadcaster struct {
	queue *memberlist.TransmitLimitedQueue // goroutine-safe
	seq   atomic.Uint64
	inbox chan []byte // payloads for OnMessage; nil without OnMessage

	dropped atomic.Uint64 // payloads dropped because inbox was full

	mu   sync.Mutex // guards seen, ring and next
	seen map[msgID]struct{}
	ring []msgID // the ids in seen, oldest at next once full
	next int
}

// gossipItem is one queued envelope. It never invalidates another.
type gossipItem struct{ msg []byte }

var _ memberlist.UniqueBroadcast = (*gossipItem)(nil)

func (g *gossipItem) Invalidates(memberlist.Broadcast) bool { return false }
func (g *gossipItem) Message() []byte                       { return g.msg }
func (g *gossipItem) Finished()                             {}
func (g *gossipItem) UniqueBroadcast()                      {}

// enqueue queues an envelope for gossip and bounds the queue.
func (b *broadcaster) enqueue(msg []byte) {
	b.queue.QueueBroadcast(&gossipItem{msg: msg})
	if b.queue.NumQueued() > maxQueued {
		b.queue.Prune(maxQueued)
	}
}

// markSeen records id and reports whether it was new.
func (b *broadcaster) markSeen(id msgID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[id]; ok {
		return false
	}
	if len(b.ring) < maxSeen {
		b.ring = append(b.ring, id)
	} else {
		delete(b.seen, b.ring[b.next])
		b.ring[b.next] = id
		b.next = (b.next + 1) % maxSeen
	}
	b.seen[id] = struct{}{}
	return true
}

// MaxPayload returns the largest payload [Cluster.Broadcast] accepts: what
// fits one gossip packet next to memberlist's headers (about 1.3 KB with
// the default 1400-byte UDP budget).
func (c *Cluster) MaxPayload() int { return c.maxPayload }

// Broadcast queues payload for every other member and returns at once. It is
// piggybacked on gossip and retransmitted a limited number of times
// (memberlist's RetransmitMult, at least 8, times ceil(log10(N+1)) sends);
// each receiver relays it in the same way once and passes it to its
// [Config.OnMessage]. Delivery is best effort: a member that is unreachable
// for the whole retransmit window misses it. Broadcast keeps no reference to
// payload.
//
// It returns an error wrapping [ErrPayloadTooLarge] if payload is longer than
// [Cluster.MaxPayload], and [ErrClosed] after [Cluster.Leave] or
// [Cluster.Close]. Safe for concurrent use.
func (c *Cluster) Broadcast(payload []byte) error {
	if !c.active() {
		return ErrClosed
	}
	if len(payload) > c.maxPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(payload), c.maxPayload)
	}
	msg := make([]byte, envelopeHeader, envelopeHeader+len(payload))
	msg[0] = envelopeVersion
	msg[1] = maxHops
	binary.BigEndian.PutUint64(msg[2:10], c.s.boot)
	binary.BigEndian.PutUint64(msg[10:18], c.bc.seq.Add(1))
	msg = append(msg, payload...)
	c.bc.enqueue(msg)
	return nil
}

// receive handles one user message from memberlist's packet goroutine: it
// delivers a payload it has not seen and relays it with one hop less, unless
// it has no hop left. It must not block; b is only valid during the call.
func (c *Cluster) receive(b []byte) {
	if len(b) < envelopeHeader || b[0] != envelopeVersion {
		c.log.Debug("peers: dropping malformed broadcast", "bytes", len(b))
		return
	}
	hops := b[1]
	id := msgID{
		origin: binary.BigEndian.Uint64(b[2:10]),
		seq:    binary.BigEndian.Uint64(b[10:18]),
	}
	if id.origin == c.s.boot || !c.bc.markSeen(id) {
		return
	}
	// Relay: memberlist does not forward user messages, so without this a
	// member the origin's few transmissions missed would never see it.
	if hops > 0 {
		relay := bytes.Clone(b)
		relay[1] = min(hops, maxHops) - 1
		c.bc.enqueue(relay)
	}
	if c.bc.inbox == nil {
		return
	}
	select {
	case c.bc.inbox <- bytes.Clone(b[envelopeHeader:]):
	default:
		if n := c.bc.dropped.Add(1); n%1024 == 1 {
			c.log.Warn("peers: OnMessage is too slow, dropping broadcasts", "dropped", n)
		}
	}
}

// runMessages is the goroutine that calls OnMessage. It stops when c.done
// closes.
func (c *Cluster) runMessages() {
	for {
		select {
		case <-c.done:
			return
		case p := <-c.bc.inbox:
			c.s.OnMessage(p)
		}
	}
}

// gossipDelegate implements memberlist.Delegate: node metadata and user
// messages. memberlist calls it concurrently from its goroutines.
type gossipDelegate struct{ c *Cluster }

var _ memberlist.Delegate = gossipDelegate{}

// NodeMeta returns this node's encoded metadata ([Join] checked its size),
// with the leaving flag once [Cluster.Leave] started.
func (d gossipDelegate) NodeMeta(limit int) []byte {
	m := d.c.s.meta
	if d.c.leaving.Load() {
		m = d.c.s.metaLeaving
	}
	if len(m) > limit {
		return nil
	}
	return m
}

func (d gossipDelegate) NotifyMsg(b []byte) { d.c.receive(b) }

func (d gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.bc.queue.GetBroadcasts(overhead, limit)
}

func (d gossipDelegate) LocalState(join bool) []byte            { return nil }
func (d gossipDelegate) MergeRemoteState(buf []byte, join bool) {}
