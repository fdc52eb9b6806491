package peers

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// Reconnection.
//
// memberlist never contacts a member again once it has declared it dead and
// the gossip-to-the-dead window has passed. After a network partition heals,
// both sides consider the other dead and stay split for good, and so do a
// node that lost every peer and a cluster whose seeds all restarted. Like
// serf's reconnect, the rejoin goroutine therefore periodically joins (a
// push/pull, so the fingerprint refusal applies as on any join)
//
//   - the configured seeds that are not alive members, and
//   - the last known address of each member that failed (not left) within
//     the reconnect window, at most maxLost of them: only members that were
//     ours, that is accepted (same fingerprint) and seen alive.
//
// One successful push/pull merges the two sides' member lists; memberlist's
// refutes and gossip do the rest. Targets are tried one at a time, in random
// order, skipping those that became alive meanwhile, so a round stops at once
// when the Cluster closes.

// maxLost bounds the failed members remembered for reconnection.
const maxLost = 64

// Reconnect timings per profile: how often the rejoin goroutine runs, how
// long a failed member is retried, and the dial timeout of join attempts.
var reconnectTimings = map[Profile]struct {
	every, window, dialCap time.Duration
}{
	ProfileLocal: {2 * time.Second, 30 * time.Second, time.Second},
	ProfileLAN:   {15 * time.Second, 5 * time.Minute, 3 * time.Second},
	ProfileWAN:   {60 * time.Second, 30 * time.Minute, 10 * time.Second},
}

// lostMember is a failed member kept for reconnection.
type lostMember struct {
	addr string
	at   time.Time // when it failed
}

// lostSet holds the failed members to reconnect to. The event goroutine
// adds and removes; the rejoin goroutine reads.
type lostSet struct {
	mu      sync.Mutex // guards members
	members map[string]lostMember
}

// add remembers that member name failed at addr, evicting the oldest entry
// when full.
func (l *lostSet) add(name, addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.members == nil {
		l.members = make(map[string]lostMember)
	}
	if _, ok := l.members[name]; !ok && len(l.members) >= maxLost {
		oldest := ""
		for n, m := range l.members {
			if oldest == "" || m.at.Before(l.members[oldest].at) {
				oldest = n
			}
		}
		delete(l.members, oldest)
	}
	l.members[name] = lostMember{addr: addr, at: now}
}

// remove forgets member name (it is alive again).
func (l *lostSet) remove(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.members, name)
}

// removeAddr forgets every member last seen at addr (it refused us).
func (l *lostSet) removeAddr(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, m := range l.members {
		if m.addr == addr {
			delete(l.members, n)
		}
	}
}

// addrs drops the members that failed more than window before now and
// returns the addresses of the others.
func (l *lostSet) addrs(now time.Time, window time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for n, m := range l.members {
		if now.Sub(m.at) > window {
			delete(l.members, n)
			continue
		}
		out = append(out, m.addr)
	}
	return out
}

// runRejoin is the goroutine that reconnects (see the comment at the top of
// this file). It stops when c.ctx ends.
func (c *Cluster) runRejoin() {
	t := time.NewTicker(c.s.rejoinEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.rejoinRound(c.ctx)
	}
}

// rejoinRound makes one round of reconnect attempts.
func (c *Cluster) rejoinRound(ctx context.Context) {
	seeds := c.s.Join
	lost := c.lost.addrs(time.Now(), c.s.reconnectFor)
	targets := make([]string, 0, len(seeds)+len(lost))
	targets = append(targets, lost...)
	for _, s := range seeds {
		if !slices.Contains(targets, s) {
			targets = append(targets, s)
		}
	}
	rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	for _, addr := range targets {
		if ctx.Err() != nil || !c.active() {
			return
		}
		if c.isAlive(ctx, addr) {
			continue
		}
		n, refused, err := c.joinOnce(ctx, addr)
		switch {
		case refused != nil:
			c.lost.removeAddr(addr)
			c.log.Warn("peers: reconnect refused", "addr", addr, "err", refused)
		case err != nil:
			c.log.Debug("peers: reconnect failed", "addr", addr, "err", err)
		default:
			c.log.Info("peers: reconnected", "addr", addr, "answered", n)
		}
	}
}

// isAlive reports whether addr (host:port) is the gossip address of an
// alive member. A host name counts as alive if any of its addresses is.
func (c *Cluster) isAlive(ctx context.Context, addr string) bool {
	alive := make(map[string]bool)
	for _, m := range *c.snapshot.Load() {
		alive[m.GossipAddr] = true
	}
	if alive[addr] {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return alive[net.JoinHostPort(ip.String(), port)]
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.dialCap)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if alive[net.JoinHostPort(ip.IP.String(), port)] {
			return true
		}
	}
	return false
}

// joinOnce makes one memberlist join attempt at addr, bounded by ctx: the
// dial is capped at the profile's dial timeout and the exchange is aborted
// when ctx ends. refused is non-nil (and wraps ErrIncompatible) only if this
// node refused to merge with addr's cluster during this very attempt.
func (c *Cluster) joinOnce(ctx context.Context, addr string) (n int, refused, err error) {
	end := c.tr.attempt(ctx)
	n, err = c.ml.Join([]string{addr})
	end()
	if err == nil && n == 0 {
		err = errors.New("no answer")
	}
	if err != nil {
		refused = c.refusals.find(err)
	}
	return n, refused, err
}
