package transport

import (
	"context"
	"strconv"
	"time"
)

// ProtocolVersion is the version of the wire protocol. It is sent in the
// connection preface and in every gossip payload; peers with another version
// refuse each other with [ErrWrongProtocol].
//
// 2: lease heartbeats, and writes carry the writer's view of the members.
// 3: write batches (a group commit of several writes for one member).
// 4: writes to every group (an empty [WriteRequest.Group]), counts of the
// values held ([WriteRequest.CountHeld]), and [WriteResponse.L2Groups]. A
// member of version 3 would acknowledge a write to every group without
// applying it (it has no group named ""): the versions must not mix.
const ProtocolVersion = 4

// Handler answers peer requests. The root package implements it; a [Server]
// calls it.
//
// The Server calls each method in its own goroutine, concurrently with any
// other call, so implementations must be safe for concurrent use. ctx carries
// the request's deadline (the client's remaining time, or
// ServerConfig.DefaultTimeout when the client set none) and is cancelled when
// the connection dies or the Server closes.
//
// A returned error that wraps one of the wire sentinels ([ErrNotFound],
// [ErrLoader], [ErrOverloaded], [ErrWrongProtocol], [ErrUnknownGroup],
// [ErrBadRequest]) reaches the client as that sentinel; any other error
// reaches it as [ErrLoader] (see the error block). A handler that panics
// gets its panic logged and the client an [ErrLoader]. Handlers may keep
// the request's slices; the transport does not reuse them. The transport
// does not modify the slices of a returned response.
type Handler interface {
	Get(ctx context.Context, req GetRequest) (GetResponse, error)
	GetMany(ctx context.Context, req GetManyRequest) (GetManyResponse, error)
	Peek(ctx context.Context, req PeekRequest) (PeekResponse, error)
	Write(ctx context.Context, req WriteRequest) (WriteResponse, error)
	Lease(ctx context.Context, req LeaseRequest) (LeaseResponse, error)
	HandOver(ctx context.Context, req HandOverRequest) (HandOverResponse, error)
}

// A CachedGetter is a [Handler] that can answer some Gets at once from
// memory. When the server's Handler implements it, the server first calls
// GetCached on the connection's read loop, and runs Get on a goroutine of
// its own (with the request's deadline) only when GetCached reports false.
// GetCached must not block; it is the server's fast path for cache hits,
// saving a goroutine, a context and a hand-off per request.
type CachedGetter interface {
	GetCached(req GetRequest) (resp GetResponse, ok bool)
}

// A QuickWriter is a [Handler] that can apply some writes at once. When the
// server's Handler implements it, the server calls WriteQuick on the
// connection's read loop for a write, and for each write of a batch in
// order, so that writes apply in the order they arrive; it runs Write on a
// goroutine of its own (for the rest of a batch) only when WriteQuick
// reports false. WriteQuick must not block
// (no callbacks into application code, no waiting on other nodes): like
// [CachedGetter], it saves a goroutine, a context and a hand-off per
// request, which for a write fan-out is most of a member's work.
type QuickWriter interface {
	WriteQuick(req WriteRequest) (resp WriteResponse, ok bool, err error)
}

// GetRequest asks the owner of Key in Group for its value, loading it if
// needed.
type GetRequest struct {
	Group, Key string
	// Trace is the caller's trace context (a propagator's carrier), or
	// nil: it travels in the request's envelope.
	Trace map[string]string
}

// Value is a cached value as it crosses the wire.
type Value struct {
	// Value is the cached bytes. An empty value arrives as nil.
	Value []byte
	// TTL is the remaining lifetime at the sender: a duration, never an
	// absolute time, because clocks differ.
	TTL time.Duration
	// Age is how long ago the value was loaded.
	Age time.Duration
	// Tags are the value's invalidation tags.
	Tags []string
}

// GetResponse answers a [GetRequest]. A missing key is reported by the
// Handler as an error wrapping [ErrNotFound], not by an empty response.
type GetResponse struct {
	Value
}

// GetManyRequest asks the owner of Keys in Group for their values.
type GetManyRequest struct {
	Group string
	Keys  []string
	Trace map[string]string // as in GetRequest
}

// KeyResult is one key's outcome in a [GetManyResponse].
type KeyResult struct {
	Key string
	Value
	// Err is nil, or wraps one of the wire sentinels (for example
	// [ErrNotFound]); on the client it is rebuilt like a request error.
	Err error
}

// GetManyResponse answers a [GetManyRequest], one result per key.
type GetManyResponse struct {
	Results []KeyResult
}

// PeekRequest asks a previous owner for a key during hand-off: the peer
// answers from its main cache only and never loads.
type PeekRequest struct {
	Group, Key string
}

// PeekResponse answers a [PeekRequest]. Found is false when the peer's main
// cache does not hold the key.
type PeekResponse struct {
	Found bool
	Value
}

// Op is the kind of a [WriteRequest].
type Op uint8

// Write operations. The zero Op is invalid.
const (
	OpInvalidate     Op = 1 + iota // drop Keys
	OpInvalidateTags               // bump the generations of Tags
	OpClear                        // drop every entry of Group
	OpSet                          // store Items
	OpSetIfAbsent                  // store Items whose keys are absent
	OpExpire                       // set the remaining TTL of Keys to TTL
)

// String returns the Op's name, or "Op(n)" for an unknown value.
func (o Op) String() string {
	switch o {
	case OpInvalidate:
		return "invalidate"
	case OpInvalidateTags:
		return "invalidate-tags"
	case OpClear:
		return "clear"
	case OpSet:
		return "set"
	case OpSetIfAbsent:
		return "set-if-absent"
	case OpExpire:
		return "expire"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Valid reports whether o is one of the defined operations.
func (o Op) Valid() bool { return o >= OpInvalidate && o <= OpExpire }

// Phase is the phase of a two-phase write (see DESIGN.md, "The write and
// invalidation path").
type Phase uint8

// Write phases. The zero Phase is "unspecified": the transport carries it
// unchanged and leaves its meaning to the Handler (a gossip replay, for
// example, may apply both phases).
const (
	// PhaseServing: apply to main caches and fence loads.
	PhaseServing Phase = 1
	// PhaseCopies: drop hot copies and fence fetches.
	PhaseCopies Phase = 2
)

// String returns the Phase's name, or "Phase(n)" for an unknown value.
func (p Phase) String() string {
	switch p {
	case 0:
		return "unspecified"
	case PhaseServing:
		return "serving"
	case PhaseCopies:
		return "copies"
	}
	return "Phase(" + strconv.Itoa(int(p)) + ")"
}

// Valid reports whether p is the zero Phase or one of the defined phases.
func (p Phase) Valid() bool { return p <= PhaseCopies }

// SetItem is one value to store in an [OpSet] or [OpSetIfAbsent] write.
type SetItem struct {
	Key   string
	Value []byte
	TTL   time.Duration
	Tags  []string
}

// WriteRequest is a write or invalidation. Which fields matter depends on Op:
// Keys for OpInvalidate and OpExpire (with TTL), Tags for OpInvalidateTags,
// Items for OpSet and OpSetIfAbsent, none for OpClear. It is also the gossip
// payload of a write (see [EncodeWrite]).
type WriteRequest struct {
	// Group is the group written to. Empty, it means every group the
	// receiver has: the root sends that for OpInvalidateTags (the root's
	// Node.InvalidateTags), and for OpClear when such a write is too large
	// for gossip. The transport carries it unchanged.
	Group string
	Op    Op
	Phase Phase
	Keys  []string
	Tags  []string
	Items []SetItem
	// TTL is the new remaining lifetime for OpExpire.
	TTL time.Duration
	// Origin is the name of the node that issued the write.
	Origin string
	// ID identifies the write so that a gossip replay can be de-duplicated.
	ID uint64
	// View is a digest of the alive members as the writer sees them (see
	// [Member]); 0 when the writer does not ask for the receiver's view.
	View uint64
	// CountHeld asks, for OpInvalidate, that Applied count the keys of
	// which the receiver held a value (in any of its caches; a cached
	// not-found is not a value), rather than the entries it removed from
	// one cache. It costs a lookup per key and cache.
	CountHeld bool
	// Trace is the writer's trace context, as in GetRequest. It travels in
	// the request's envelope (not in gossip, nor in a batch's writes).
	Trace map[string]string
}

// A WriteResult is the answer to one write of a batch ([Client.WriteBatch]):
// its response, or its error (as [Client.Write] would return it).
type WriteResult struct {
	WriteResponse
	Err error
}

// WriteResponse answers a [WriteRequest].
type WriteResponse struct {
	// Applied counts what the write touched, for example how many keys
	// existed or were stored (see [WriteRequest.CountHeld]).
	Applied int
	// Members is the responder's view of the alive members, sent when its
	// digest differs from the request's View: the writer must reach the
	// members it lacks too.
	Members []Member
	// Settle is how long SettleMember, a member that the responder
	// answered "member" to recently and no longer counts alive, may still
	// hold its lease: the writer waits that long before it reports the
	// write complete. Zero when there is none.
	Settle       time.Duration
	SettleMember string
	// L2Groups answers a write to every group (an empty Group): the
	// responder's groups that have a second level, which the writer must
	// have reached itself (members never call a second level while they
	// apply a write). Nil for a write to one group.
	L2Groups []string
}

// Member is an alive member as a node sees it.
type Member struct {
	Name    string
	RPCAddr string
	// Incarnation identifies the member's process: a member restarted
	// under the same name has a new one.
	Incarnation uint64
}

// HandOverRequest offers the entries a leaving member (From) owns in Group
// to the member that owns them next. Each item's TTL is its remaining
// lifetime (0: none).
type HandOverRequest struct {
	Group string
	From  string
	Items []SetItem
}

// HandOverResponse answers a [HandOverRequest]: how many items the receiver
// stored.
type HandOverResponse struct {
	Stored int
}

// LeaseRequest is a lease heartbeat: the sender asks whether the receiver
// counts it, at Incarnation, as an alive member.
type LeaseRequest struct {
	From        string
	Incarnation uint64
	// Base is a digest of the sender's quorum base.
	Base uint64
	// Leaving: the sender is leaving gracefully and serves nothing any
	// more; the receiver forgets that it answered it.
	Leaving bool
}

// LeaseResponse answers a [LeaseRequest].
type LeaseResponse struct {
	// Member: the receiver counts the sender, at the request's
	// incarnation, as an alive member.
	Member bool
	// Leased: the receiver holds a lease itself.
	Leased bool
	// Base is a digest of the receiver's quorum base; BaseNames lists it
	// when it differs from the request's Base.
	Base      uint64
	BaseNames []string
	// Incarnation is the receiver's.
	Incarnation uint64
}
