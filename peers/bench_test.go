package peers

import (
	"testing"
)

func BenchmarkDecodeMeta(b *testing.B) {
	raw := encodeMeta(meta{Protocol: protocolVersion, RPCAddr: "10.0.0.5:7947", Fingerprint: "ring:271/1.25/20 proto:1", Boot: 42})
	for b.Loop() {
		if _, err := checkMeta("n", raw, "ring:271/1.25/20 proto:1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceive measures the per-message cost on memberlist's packet
// goroutine: dedupe, relay enqueue and hand-off to the OnMessage goroutine.
func BenchmarkReceive(b *testing.B) {
	c := bareCluster(1, true)
	msg := envelope(2, 0, "invalidate group=users keys=42,43,44")
	var seq uint64
	for b.Loop() {
		seq++
		msg[17] = byte(seq) // vary the id so nothing is a duplicate
		msg[16] = byte(seq >> 8)
		msg[15] = byte(seq >> 16)
		c.receive(msg)
		<-c.bc.inbox
		if c.bc.queue.NumQueued() > 1024 {
			c.bc.queue.Reset()
		}
	}
}

func BenchmarkBroadcastGossip(b *testing.B) {
	c := bareCluster(1, false)
	payload := make([]byte, 60)
	for b.Loop() {
		if err := c.Broadcast(payload); err != nil {
			b.Fatal(err)
		}
		// What one gossip round takes out of the queue.
		c.bc.queue.GetBroadcasts(3, 1400)
	}
}
