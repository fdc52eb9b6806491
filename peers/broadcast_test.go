package peers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// bareCluster is a Cluster without memberlist, for the broadcast plumbing.
func bareCluster(boot uint64, withInbox bool) *Cluster {
	c := &Cluster{
		s:          &settings{Config: Config{Name: "self"}, boot: boot},
		log:        testLogger(),
		events:     newEventQueue(),
		view:       newMemberView("self", 1),
		done:       make(chan struct{}),
		maxPayload: 64,
	}
	c.bc.seen = make(map[msgID]struct{})
	c.bc.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 3 }, RetransmitMult: 2}
	if withInbox {
		c.bc.inbox = make(chan []byte, inboxSize)
	}
	return c
}

func envelope(origin, seq uint64, payload string) []byte {
	return envelopeHops(maxHops, origin, seq, payload)
}

func envelopeHops(hops byte, origin, seq uint64, payload string) []byte {
	b := []byte{envelopeVersion, hops}
	b = binary.BigEndian.AppendUint64(b, origin)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, payload...)
}

func TestReceive(t *testing.T) {
	tests := []struct {
		name        string
		msg         []byte
		wantDeliver bool
		wantRelay   []byte // the relayed envelope, nil if none
	}{
		{"new", envelope(2, 1, "hello"), true, envelopeHops(maxHops-1, 2, 1, "hello")},
		{"duplicate", envelope(2, 1, "hello"), false, nil},
		{"same seq other origin", envelope(3, 1, "hi"), true, envelopeHops(maxHops-1, 3, 1, "hi")},
		{"own", envelope(1, 1, "mine"), false, nil},
		{"empty payload", envelope(2, 2, ""), true, envelopeHops(maxHops-1, 2, 2, "")},
		{"one hop left", envelopeHops(1, 2, 3, "x"), true, envelopeHops(0, 2, 3, "x")},
		{"no hop left: delivered, not relayed", envelopeHops(0, 2, 4, "x"), true, nil},
		{"hop count above the maximum", envelopeHops(255, 2, 5, "x"), true, envelopeHops(maxHops-1, 2, 5, "x")},
		{"short", []byte{envelopeVersion, 1, 2}, false, nil},
		{"version 1", append([]byte{1}, envelope(2, 6, "x")[2:]...), false, nil},
		{"other version", append([]byte{9}, envelope(2, 7, "x")[1:]...), false, nil},
	}
	c := bareCluster(1, true)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.bc.queue.Reset()
			c.receive(tt.msg)
			relayed := c.bc.queue.GetBroadcasts(0, 1<<10)
			var got []byte
			delivered := false
			select {
			case got = <-c.bc.inbox:
				delivered = true
			default:
			}
			if delivered != tt.wantDeliver {
				t.Fatalf("receive(%q): delivered %v, want %v", tt.msg, delivered, tt.wantDeliver)
			}
			if delivered && !bytes.Equal(got, tt.msg[envelopeHeader:]) {
				t.Errorf("delivered %q, want %q", got, tt.msg[envelopeHeader:])
			}
			switch {
			case tt.wantRelay == nil && len(relayed) != 0:
				t.Errorf("relayed %q, want nothing", relayed)
			case tt.wantRelay != nil && (len(relayed) != 1 || !bytes.Equal(relayed[0], tt.wantRelay)):
				t.Errorf("relayed %q, want %q", relayed, tt.wantRelay)
			}
		})
	}
}

// TestRelayStopsAfterMaxHops passes one payload through a chain of nodes
// that each forgot its id (a fresh node every time): it is relayed at most
// maxHops times, then only delivered.
func TestRelayStopsAfterMaxHops(t *testing.T) {
	msg := envelope(2, 1, "p")
	relays := 0
	for range 3 * maxHops {
		c := bareCluster(1, true)
		c.receive(msg)
		out := c.bc.queue.GetBroadcasts(0, 1<<10)
		if len(out) == 0 {
			break
		}
		relays++
		msg = out[0]
	}
	if relays != maxHops {
		t.Errorf("payload relayed %d times, want %d", relays, maxHops)
	}
}

func TestReceiveDeliveredSliceIsCallees(t *testing.T) {
	c := bareCluster(1, true)
	msg := envelope(2, 1, "abc")
	c.receive(msg)
	got := <-c.bc.inbox
	got[0] = 'X'
	msg[envelopeHeader] = 'Y' // memberlist may reuse its buffer
	relayed := c.bc.queue.GetBroadcasts(0, 1<<10)
	if len(relayed) != 1 || !bytes.Equal(relayed[0], envelopeHops(maxHops-1, 2, 1, "abc")) {
		t.Errorf("relayed %q, want the original envelope", relayed)
	}
}

func TestMarkSeenBounded(t *testing.T) {
	c := bareCluster(1, false)
	for i := range maxSeen + 100 {
		if !c.bc.markSeen(msgID{origin: 2, seq: uint64(i)}) {
			t.Fatalf("markSeen(%d) = false for a new id", i)
		}
	}
	if len(c.bc.seen) != maxSeen {
		t.Errorf("len(seen) = %d, want %d", len(c.bc.seen), maxSeen)
	}
	if c.bc.markSeen(msgID{origin: 2, seq: maxSeen + 99}) {
		t.Errorf("markSeen(recent) = true, want false")
	}
	if !c.bc.markSeen(msgID{origin: 2, seq: 0}) {
		t.Errorf("markSeen(evicted) = false, want true")
	}
}

func TestBroadcastQueueBounded(t *testing.T) {
	c := bareCluster(1, false)
	for range maxQueued + 10 {
		if err := c.Broadcast([]byte("x")); err != nil {
			t.Fatalf("Broadcast() = %v", err)
		}
	}
	if n := c.bc.queue.NumQueued(); n > maxQueued {
		t.Errorf("NumQueued() = %d, want <= %d", n, maxQueued)
	}
}

func TestBroadcastReachesEveryMember(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	rs := make([]*recorder, 4)
	cs := make([]*Cluster, 4)
	for i := range cs {
		rs[i] = &recorder{}
		cfg := testConfig(t, fmt.Sprintf("n%d", i), rs[i])
		cfg.SecretKey = key
		if i > 0 {
			cfg.Join = []string{cs[0].GossipAddr()}
		}
		cs[i] = start(t, cfg)
	}
	waitMembers(t, []string{"n0", "n1", "n2", "n3"}, cs...)

	if got := cs[0].MaxPayload(); got < 1000 {
		t.Errorf("MaxPayload() = %d with encryption, want at least 1000", got)
	}
	big := bytes.Repeat([]byte("b"), cs[1].MaxPayload())
	if err := cs[1].Broadcast(append(big, 'x')); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("Broadcast(MaxPayload+1 bytes) = %v, want ErrPayloadTooLarge", err)
	}
	small := []byte("invalidate users:42")
	if err := cs[0].Broadcast(small); err != nil {
		t.Fatalf("Broadcast(small) = %v", err)
	}
	if err := cs[1].Broadcast(big); err != nil {
		t.Fatalf("Broadcast(MaxPayload bytes) = %v", err)
	}
	for i, r := range rs {
		if i != 0 {
			waitFor(t, 20*time.Second, fmt.Sprintf("n%d to get n0's payload", i), func() bool { return r.countMessage(small) > 0 })
		}
		if i != 1 {
			waitFor(t, 20*time.Second, fmt.Sprintf("n%d to get n1's payload", i), func() bool { return r.countMessage(big) > 0 })
		}
	}
	for i, r := range rs {
		if n := r.countMessage(small); n > 1 || (i == 0 && n != 0) {
			t.Errorf("n%d got n0's payload %d times", i, n)
		}
		if n := r.countMessage(big); n > 1 || (i == 1 && n != 0) {
			t.Errorf("n%d got n1's payload %d times", i, n)
		}
	}
	_ = cs[2].Close()
	if err := cs[2].Broadcast(small); !errors.Is(err, ErrClosed) {
		t.Errorf("Broadcast after Close = %v, want ErrClosed", err)
	}
	// Close left gracefully: the others drop n2 without failure detection.
	waitMembers(t, []string{"n0", "n1", "n3"}, cs[0], cs[1], cs[3])
}
