package peers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as seen by this node.
type State uint8

// Member states. memberlist does not expose suspicion, so [Cluster.Members]
// and [Config.OnChange] list every member that is not dead or gone as
// StateAlive; the other states exist for logs and future use.
const (
	StateAlive State = iota
	StateSuspect
	StateDead
	StateLeft
)

// String returns "alive", "suspect", "dead", "left" or "state(N)".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
}

// Member is one node of the cluster, as a value: callers may keep and modify
// it freely.
type Member struct {
	Name       string
	GossipAddr string // host:port
	RPCAddr    string // from the node's metadata
	State      State
	// Incarnation identifies the member's process: every [Join] picks a
	// new one, ordered by start time, so a member restarted under the
	// same name has a larger one (see the package doc, "Restarts").
	Incarnation uint64
}

// Profile selects memberlist's timing preset.
type Profile uint8

// Timing presets. Every profile raises memberlist's RetransmitMult to at
// least 8 (the presets have 2 or 4), so that a membership change reaches
// every member by gossip instead of waiting for a periodic push/pull.
const (
	// ProfileLAN is memberlist.DefaultLANConfig: probes every second,
	// 10s TCP timeout. The zero value.
	ProfileLAN Profile = iota
	// ProfileLocal is memberlist.DefaultLocalConfig: fast timings for
	// loopback clusters in tests.
	ProfileLocal
	// ProfileWAN is memberlist.DefaultWANConfig: slow, tolerant timings.
	ProfileWAN
)

// Config configures [Join]. Join copies it and never writes into it; the zero
// value of each field is documented.
type Config struct {
	// Name is this node's unique name. If empty, the hostname plus a random
	// suffix.
	Name string
	// BindAddr is the gossip listen address, host:port. TCP and UDP are both
	// bound on that port; port 0 picks a free one. The host must be an IP
	// address or resolve to one; empty host means every interface. If empty,
	// "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the host:port other members should use. If empty, the
	// bound address (a private IP of this host when bound to every
	// interface). A port of 0 means the bound port.
	AdvertiseAddr string
	// RPCAddr is advertised to peers in the node metadata. May be empty.
	RPCAddr string
	// Fingerprint identifies ring settings and protocol version; members
	// whose fingerprint differs are refused, in both directions, with
	// [ErrIncompatible]. RPCAddr and Fingerprint together must fit the
	// 512-byte metadata limit (about 490 bytes), else [ErrInvalidConfig].
	Fingerprint string
	// Join lists seeds (host:port). If empty, the node starts alone and
	// others join it. Afterwards, every 2s, 15s or 60s (ProfileLocal, LAN,
	// WAN) whatever the number of alive members, the node joins again the
	// seeds that are not alive members and the last known addresses of
	// members that failed (not left) in the last 30s, 5min or 30min (at
	// most 64 of them), so that a healed partition merges and an isolated
	// node finds its way back; the fingerprint check applies to these joins
	// as to the first.
	Join []string
	// JoinTimeout bounds the retries of the initial join. If zero, 10s.
	JoinTimeout time.Duration
	// Incarnation identifies this process to the cluster (see
	// [Member.Incarnation]); it must come from [NewIncarnation] and differ
	// for every Join. If zero, Join picks one.
	Incarnation uint64
	// SecretKey enables memberlist gossip encryption: 16, 24 or 32 bytes
	// (AES-128/192/256), else [ErrInvalidKey]. Nodes without the same key
	// cannot join. If empty, gossip is not encrypted.
	SecretKey []byte
	// Profile selects timing presets. The zero value is ProfileLAN.
	Profile Profile
	// Logger receives this package's logs and memberlist's (its [DEBUG]
	// lines at Debug, [INFO] at Info, [WARN] at Warn, [ERR] at Error). If
	// nil, slog.Default(). memberlist logs while holding its own locks, so
	// the logger's handler runs under them: keep it fast and non-blocking
	// (a handler that waits on a slow sink stalls gossip and failure
	// detection).
	Logger *slog.Logger

	// OnChange, if not nil, is called with the alive members (self
	// included, sorted by name) after every membership change: in order,
	// never concurrently with itself or OnCutOff, never while holding a lock
	// of this package. The slice is the callee's. By the time Join returns,
	// OnChange has been called for the members known then.
	OnChange func(members []Member)
	// OnMessage, if not nil, is called with each payload another member
	// passed to [Cluster.Broadcast] (never our own), from one goroutine, in
	// arrival order, usually once per payload (a duplicate is possible if
	// it arrives very late). The slice is the callee's. It may run
	// concurrently with OnChange. If it is slower than the arrival rate for
	// long, payloads beyond an internal queue of 4096 are dropped and
	// logged.
	OnMessage func(payload []byte)
	// OnCutOff, if not nil, is called when this node learns it was cut off
	// from the cluster (see the package doc for the signals): the caller
	// flushes the copies it may have missed invalidations for. Called from
	// the same goroutine as OnChange, in order with it. It may fire more
	// often than strictly needed (for example right after a quick restart
	// under the same name), never less.
	OnCutOff func()

	// Unexported hooks for this package's tests.
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	tweak         func(*memberlist.Config)
}

const (
	defaultBindAddr    = "0.0.0.0:7946"
	defaultJoinTimeout = 10 * time.Second
	bindRetries        = 10
)

// settings is a validated, defaulted copy of Config plus what was derived
// from it.
type settings struct {
	Config
	bindIP        string
	bindPort      int
	advertiseIP   string        // empty: let memberlist pick
	advertisePort int           // 0: the bound port
	meta          []byte        // encoded metadata of this node
	metaLeaving   []byte        // meta with the leaving flag (same length)
	boot          uint64        // incarnation of this Cluster: in meta, memberlist's name and message ids
	mlName        string        // memberlist's name for this node: Name#incarnation
	rejoinEvery   time.Duration // how often the rejoin goroutine runs
	reconnectFor  time.Duration // how long a failed member is retried
	dialCap       time.Duration // dial timeout of join attempts
	leaveOnClose  time.Duration // how long Close waits for the leave broadcast
}

// validate copies cfg, fills in defaults and checks every field.
func validate(ctx context.Context, cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	s.Join = append([]string(nil), cfg.Join...)
	if len(cfg.SecretKey) > 0 {
		switch len(cfg.SecretKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrInvalidKey, len(cfg.SecretKey))
		}
		s.SecretKey = append([]byte(nil), cfg.SecretKey...)
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.JoinTimeout < 0 {
		return nil, fmt.Errorf("%w: negative JoinTimeout %v", ErrInvalidConfig, s.JoinTimeout)
	}
	if s.JoinTimeout == 0 {
		s.JoinTimeout = defaultJoinTimeout
	}
	switch s.Profile {
	case ProfileLAN:
		s.leaveOnClose = 3 * time.Second
	case ProfileLocal:
		s.leaveOnClose = time.Second
	case ProfileWAN:
		s.leaveOnClose = 5 * time.Second
	default:
		return nil, fmt.Errorf("%w: unknown Profile %d", ErrInvalidConfig, s.Profile)
	}
	rt := reconnectTimings[s.Profile]
	s.rejoinEvery, s.reconnectFor, s.dialCap = rt.every, rt.window, rt.dialCap
	if s.Name == "" {
		name, err := defaultName()
		if err != nil {
			return nil, err
		}
		s.Name = name
	}
	for i, seed := range s.Join {
		if seed == "" {
			return nil, fmt.Errorf("%w: Join[%d] is empty", ErrInvalidConfig, i)
		}
	}

	bind := s.BindAddr
	if bind == "" {
		bind = defaultBindAddr
	}
	ip, port, err := resolveHostPort(ctx, bind, "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("%w: BindAddr %q: %w", ErrInvalidConfig, bind, err)
	}
	s.bindIP, s.bindPort = ip, port
	if s.AdvertiseAddr != "" {
		ip, port, err := resolveHostPort(ctx, s.AdvertiseAddr, "")
		if err != nil || ip == "" {
			if err == nil {
				err = errors.New("missing host")
			}
			return nil, fmt.Errorf("%w: AdvertiseAddr %q: %w", ErrInvalidConfig, s.AdvertiseAddr, err)
		}
		s.advertiseIP, s.advertisePort = ip, port
	}

	boot := cfg.Incarnation
	if boot == 0 {
		var err error
		if boot, err = NewIncarnation(); err != nil {
			return nil, err
		}
	}
	s.boot = boot
	s.mlName = incarnationName(s.Name, boot)
	m := meta{
		Protocol:    protocolVersion,
		RPCAddr:     s.RPCAddr,
		Fingerprint: s.Fingerprint,
		Boot:        s.boot,
	}
	s.meta = encodeMeta(m)
	m.Leaving = true
	s.metaLeaving = encodeMeta(m)
	if len(s.meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: RPCAddr and Fingerprint need %d bytes of metadata, limit %d",
			ErrInvalidConfig, len(s.meta), memberlist.MetaMaxSize)
	}
	return s, nil
}

// NewIncarnation returns a new incarnation for [Config.Incarnation].
func NewIncarnation() (uint64, error) { return newIncarnation(time.Now()) }

// newIncarnation returns a new incarnation id: the start time in
// microseconds since the Unix epoch in the high 52 bits (good until the
// year 2112), 12 random bits below, so that a later start of a process
// under the same name has a larger id (across machines, as long as their
// clocks differ by less than the time a restart takes) and two starts in
// one microsecond still differ.
func newIncarnation(now time.Time) (uint64, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("peers: incarnation: %w", err)
	}
	return uint64(now.UnixMicro())<<12 | uint64(b[0])<<4&0xff0 | uint64(b[1]&0xf), nil
}

// incarnationSep separates a node's name from its incarnation in the name
// memberlist knows it by.
const incarnationSep = "#"

// incarnationName is the name memberlist knows a node by: its name, "#",
// and its incarnation in 16 hex digits. Each process start is a new member
// to memberlist, so a restart under the same name is never refused as a
// conflicting address, and the process it replaces is failed like any
// dead member.
func incarnationName(name string, inc uint64) string {
	return fmt.Sprintf("%s%s%016x", name, incarnationSep, inc)
}

// splitIncarnation returns the node name and incarnation of a memberlist
// name; ok is false when it has none.
func splitIncarnation(mlName string) (name string, inc uint64, ok bool) {
	i := strings.LastIndex(mlName, incarnationSep)
	if i < 0 || len(mlName)-i-1 != 16 {
		return "", 0, false
	}
	inc, err := strconv.ParseUint(mlName[i+1:], 16, 64)
	if err != nil {
		return "", 0, false
	}
	return mlName[:i], inc, true
}

// resolveHostPort splits host:port and resolves the host to one IP address.
// An empty host becomes emptyHost.
func resolveHostPort(ctx context.Context, hostport, emptyHost string) (string, int, error) {
	host, sport, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(sport)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", sport)
	}
	if host == "" {
		return emptyHost, port, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), port, nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", 0, err
	}
	if len(addrs) == 0 {
		return "", 0, fmt.Errorf("host %q has no address", host)
	}
	return addrs[0].IP.String(), port, nil
}

// defaultName returns the hostname plus a random suffix.
func defaultName() (string, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("peers: random name: %w", err)
	}
	return host + "-" + hex.EncodeToString(b[:]), nil
}

// memberlistConfig builds memberlist's config for s (everything except the
// transport, delegates and logger, which [Join] sets).
func (s *settings) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	switch s.Profile {
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	// memberlist sends each alive, suspect and dead message to only
	// RetransmitMult*ceil(log10(N+1)) peers picked at random (2 below 10
	// members with DefaultLocalConfig), and every receiver relays it the
	// same way; a member that all those picks missed learns the change
	// only from a push/pull, the first of which runs 1 to 2 intervals
	// (15s to 30s local, 30s to 60s LAN) after the node started. With 4
	// members and 2 sends, a new member stayed unknown to one old member
	// for that long in about 1 join in 10. The floor shared with
	// broadcasts (see minRetransmitMult) makes a miss negligible: below
	// 10 members a sender's first gossip round (GossipNodes=3 peers)
	// already reaches 3 distinct peers, all of them up to 4 members.
	mc.RetransmitMult = max(mc.RetransmitMult, minRetransmitMult)
	mc.Name = s.mlName
	mc.BindAddr = s.bindIP
	mc.BindPort = s.bindPort
	mc.AdvertiseAddr = s.advertiseIP
	mc.AdvertisePort = s.advertisePort
	if len(s.SecretKey) > 0 {
		mc.SecretKey = append([]byte(nil), s.SecretKey...)
	}
	return mc
}
