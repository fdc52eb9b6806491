package meshcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"

	"github.com/meshcache/meshcache/peers"
	"github.com/meshcache/meshcache/ring"
	"github.com/meshcache/meshcache/transport"
)

// GossipProfile selects memberlist's timing preset for a node's gossip.
type GossipProfile uint8

// Gossip timing presets.
const (
	// GossipLAN is memberlist's LAN preset: probes every second, failure
	// detection in a few seconds. The zero value.
	GossipLAN GossipProfile = iota
	// GossipLocal is memberlist's local preset: fast timings for clusters on
	// one host (tests, demos).
	GossipLocal
	// GossipWAN is memberlist's WAN preset: slow, tolerant timings.
	GossipWAN
)

// String returns "lan", "local", "wan" or "gossip(N)".
func (c GossipProfile) String() string {
	switch c {
	case GossipLAN:
		return "lan"
	case GossipLocal:
		return "local"
	case GossipWAN:
		return "wan"
	}
	return "gossip(" + strconv.Itoa(int(c)) + ")"
}

func (c GossipProfile) profile() (peers.Profile, time.Duration, error) {
	switch c {
	case GossipLAN:
		return peers.ProfileLAN, time.Second, nil
	case GossipLocal:
		return peers.ProfileLocal, 200 * time.Millisecond, nil
	case GossipWAN:
		return peers.ProfileWAN, 5 * time.Second, nil
	}
	return 0, 0, fmt.Errorf("meshcache: GossipProfile %v: %w", c, ErrInvalidOption)
}

// clusterConfig is the part of Config a clustered node keeps.
type clusterConfig struct {
	ring            ring.Config
	settle          time.Duration
	writeTimeout    time.Duration
	fetchTimeout    time.Duration
	handOverTimeout time.Duration
	handOverBytes   int64
	disableHandoff  bool
	lease           leaseTimings
}

// fingerprint names what members must agree on: the root's wire protocol,
// the ring's settings, and whether the peer transport uses TLS. A member
// without TLS cannot talk to one with it, and must not own keys of a
// cluster that uses TLS: the others would fall back on all of them.
// Without TLS the fingerprint is what it was before TLS took part, so
// that such clusters can upgrade one node at a time.
func fingerprint(rc ring.Config, secure bool) string {
	fp := "meshcache/" + strconv.Itoa(int(transport.ProtocolVersion)) + "/" + rc.Fingerprint()
	if secure {
		fp += "/tls"
	}
	return fp
}

// startCluster starts the peer transport and joins the cluster. On error
// it stops what it started.
func (n *Node) startCluster(cfg Config) (err error) {
	profile, settle, err := cfg.GossipProfile.profile()
	if err != nil {
		return err
	}
	timings := leaseProfiles[cfg.GossipProfile]

	rc := ring.Config{Partitions: cfg.Partitions, LoadFactor: cfg.LoadFactor}
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("meshcache: ring settings: %w: %w", ErrInvalidOption, err)
	}
	if cfg.FetchTimeout < 0 {
		return fmt.Errorf("meshcache: FetchTimeout %v: %w", cfg.FetchTimeout, ErrInvalidOption)
	}
	if cfg.WriteTimeout < 0 {
		return fmt.Errorf("meshcache: WriteTimeout %v: %w", cfg.WriteTimeout, ErrInvalidOption)
	}
	if cfg.TLS != nil && len(cfg.SecretKey) == 0 {
		return fmt.Errorf("meshcache: TLS without SecretKey: %w: gossip carries membership and writes, "+
			"so a cluster that secures its peer transport must encrypt and authenticate its gossip too", ErrInvalidOption)
	}
	n.ccfg = clusterConfig{
		ring:            rc,
		settle:          settle,
		writeTimeout:    cfg.WriteTimeout,
		fetchTimeout:    cmp.Or(cfg.FetchTimeout, DefaultFetchTimeout),
		handOverTimeout: cmp.Or(cfg.HandOverTimeout, DefaultHandOverTimeout),
		handOverBytes:   cmp.Or(cfg.HandOverBytes, DefaultHandOverBytes),
		disableHandoff:  cfg.DisableHandoff,
		lease:           timings,
	}
	if n.ccfg.writeTimeout == 0 {
		n.ccfg.writeTimeout = DefaultWriteTimeout
	}
	rpcAddr := cfg.RPCAddr
	if rpcAddr == "" {
		host, _, err := net.SplitHostPort(cfg.BindAddr)
		if err != nil {
			return fmt.Errorf("meshcache: BindAddr %q: %w: %w", cfg.BindAddr, ErrInvalidOption, err)
		}
		rpcAddr = net.JoinHostPort(host, "0")
	}
	if cfg.MaxFrameBytes < 0 {
		return fmt.Errorf("meshcache: MaxFrameBytes %d: %w", cfg.MaxFrameBytes, ErrInvalidOption)
	}
	// The handlers use the lease and the incarnation: both exist before
	// the server starts. A node that starts a new cluster is its own base.
	if n.inc, err = peers.NewIncarnation(); err != nil {
		return err
	}
	n.lease = newLease(timings, cfg.MinorityServes)
	if len(cfg.Join) == 0 {
		n.lease.mu.Lock()
		n.lease.setBaseLocked([]string{n.name})
		n.lease.mu.Unlock()
	}
	n.server, err = transport.NewServer(transport.ServerConfig{
		Addr:          rpcAddr,
		TLS:           cfg.TLS,
		MaxFrameBytes: cfg.MaxFrameBytes,
		Logger:        n.log,
	}, handler{n})
	if err != nil {
		return fmt.Errorf("meshcache: peer transport: %w: %w", ErrInvalidOption, err)
	}
	ccfg := transport.ClientConfig{TLS: cfg.TLS, MaxFrameBytes: cfg.MaxFrameBytes, Logger: n.log, SilenceTimeout: n.ccfg.fetchTimeout}
	if err := ccfg.Validate(); err != nil {
		n.server.Close()
		return fmt.Errorf("meshcache: peer transport: %w: %w", ErrInvalidOption, err)
	}
	n.client = transport.NewClient(ccfg)
	defer func() {
		if err != nil {
			n.server.Close()
			n.client.Close()
		}
	}()
	advertised, err := advertiseRPC(n.server.Addr(), cfg.AdvertiseAddr)
	if err != nil {
		return err
	}
	n.cluster, err = peers.Join(context.Background(), peers.Config{
		Name:          n.name,
		BindAddr:      cfg.BindAddr,
		AdvertiseAddr: cfg.AdvertiseAddr,
		RPCAddr:       advertised,
		Fingerprint:   fingerprint(rc, cfg.TLS != nil),
		Join:          cfg.Join,
		JoinTimeout:   cfg.JoinTimeout,
		Incarnation:   n.inc,
		SecretKey:     cfg.SecretKey,
		Profile:       profile,
		Logger:        n.baseLog, // peers adds the node's name itself
		OnChange:      n.onChange,
		OnMessage:     n.onMessage,
		OnCutOff:      n.onCutOff,
	})
	if err != nil {
		switch {
		case errors.Is(err, peers.ErrIncompatible):
			return fmt.Errorf("meshcache: join: %w: %w: %w", ErrJoin, ErrIncompatible, err)
		case errors.Is(err, peers.ErrJoin):
			return fmt.Errorf("meshcache: join: %w: %w", ErrJoin, err)
		}
		return fmt.Errorf("meshcache: join: %w: %w", ErrInvalidOption, err)
	}
	if members := n.cluster.Members(); len(cfg.Join) > 0 && len(members) == 1 {
		// Its seeds led back to itself (a name that resolves to its own
		// address): it starts a new cluster, and is its own base.
		n.lease.mu.Lock()
		if n.lease.base == nil {
			n.lease.setBaseLocked([]string{n.name})
		}
		n.lease.mu.Unlock()
	}
	n.wg.Go(n.runLease)
	n.wg.Go(n.settle)
	return nil
}

// advertiseRPC returns the RPC address to tell peers: the bound one, with
// an unspecified host (0.0.0.0, ::) replaced by the host of advertise or
// else by a private IP of this machine.
func advertiseRPC(bound, advertise string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", fmt.Errorf("meshcache: RPC address %q: %w", bound, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return bound, nil
	}
	if advertise != "" {
		if h, _, err := net.SplitHostPort(advertise); err == nil && h != "" {
			return net.JoinHostPort(h, port), nil
		}
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("meshcache: RPCAddr %q listens on every interface and no private IP was found; set AdvertiseAddr: %w", bound, ErrInvalidOption)
	}
	return net.JoinHostPort(ip, port), nil
}

// stopPeers cancels the requests in flight to every peer.
func (n *Node) stopPeers() {
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	if rs := n.ring.Load(); rs != nil {
		for _, p := range rs.peers {
			p.cancel()
		}
	}
}

// leaveTimeout bounds how long Close waits for the leave to spread.
const leaveTimeout = 3 * time.Second

// closeCluster leaves the cluster, then stops the transport.
func (n *Node) closeCluster() {
	if n.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := n.cluster.Leave(ctx); err != nil {
		n.log.Warn("meshcache: leaving the cluster", "err", err)
	}
	cancel()
	n.cluster.Close()
	n.server.Close()
}
