// Package transport is meshcache's peer RPC: get, get-many, peek (hand-off)
// and write requests between nodes, as protobuf messages framed on
// persistent, multiplexed TCP connections, optionally with mutual TLS.
//
// The root package implements [Handler] and serves it with a [Server]; it
// calls peers with a [Client]. Both speak in the plain Go structs of this
// package ([GetRequest], [GetResponse], ...); the protobuf types are
// internal. Errors cross the wire as codes and come back as the same
// sentinels, so errors.Is(err, transport.ErrNotFound) works on the caller's
// node. [EncodeWrite] and [DecodeWrite] give writes a byte form for the
// gossip fallback path, so that only this package knows the wire format.
//
// # Connections
//
// A Client keeps one connection per peer address, dialed on first use (one
// dial shared by concurrent callers) and redialed after a failure, and runs
// any number of requests on it at once. On a quiet connection a caller does
// its own I/O, as a bare client would: it writes its request with one
// system call that does not block, and reads until its response comes, for
// 2ms at most (handing any other response it reads to its caller). On a busy one, or
// for a large request, callers queue their encoded request for the
// connection's writer goroutine, and whoever is reading hands them their
// response. Either way a caller waits for its response or its own context,
// never for a write, so a peer that stops reading delays nobody beyond
// their deadline; a reading caller notices its context's end within 2ms.
// The writer writes queued requests (and what a caller's write left over)
// in batches, each bounded by ClientConfig.WriteTimeout (a write that fails
// or times out closes the connection); a request whose caller gave up
// before it was written is never sent, and one begun is written whole, so
// the stream stays in step. The response of an abandoned request is
// dropped. No goroutine is started per request on the client. TLS
// connections, and every connection on platforms other than Linux, keep
// one reader goroutine that reads every response, and their requests
// always go through the writer goroutine. Every request carries a deadline: its context's, or
// ClientConfig.DefaultTimeout. A connection that has read nothing for a
// while (2s) since a request was written, when a request written on it
// times out, is presumed dead (a peer gone without a reset) and closed; the
// next request dials again. So does a request on a connection that had no
// request for a millisecond or more, if the kernel says the peer has
// closed it meanwhile (on Linux, for connections without TLS, which
// nobody reads while idle).
//
// With ClientConfig.SilenceTimeout set, a connection also has a watcher
// goroutine that tells a slow peer from a silent one. A connection on
// which nothing at all arrives for SilenceTimeout while a request waits
// (since the later of its send and the last bytes received) is closed,
// failing its requests with [ErrPeerSilent] (which also wraps
// [ErrUnavailable]); the next request dials again, within SilenceTimeout
// too. While requests wait and nothing has arrived for a third of
// SilenceTimeout, the watcher sends a ping, which the server answers on its
// read loop at once, however long its handlers take: a live peer keeps
// its connection alive, a paused one (SIGSTOP, a frozen VM) fails its
// requests after about SilenceTimeout instead of their deadline. A
// connection with nothing outstanding sends no ping.
//
// The Server runs one reader goroutine per connection and one goroutine
// per request (except Gets a [CachedGetter] answers from its cache, and
// writes and write batches a [QuickWriter] applies, on the read loop), up to ServerConfig.MaxConcurrent requests at once; beyond
// that it answers [ErrOverloaded] at once. Its responses are written under
// a mutex into a buffered writer, flushed by the last of a burst of
// concurrent writers, each write bounded by ServerConfig.WriteTimeout.
//
// With TLS, both sides verify the other against the cluster's CA pool,
// never the system roots: a server config without ClientCAs or RootCAs, or
// a client config without RootCAs, is refused with [ErrBadConfig].
//
// Input that is not the protocol (garbage, a truncated or oversized frame,
// an envelope that does not decode, a response that does not answer its
// request) closes that one connection with a logged error and fails its
// pending requests with [ErrUnavailable]; it never panics and other
// connections are unaffected.
//
// # Wire format
//
// A connection opens with an 8-byte preface from the client: the magic
// "MSHC" and the big-endian uint32 [ProtocolVersion]. The server answers with
// its own preface, and closes the connection if the versions differ (the
// client then fails with [ErrWrongProtocol]); bytes without the magic close
// the connection without an answer.
//
// Then both sides send frames: a big-endian uint32 body length (at most the
// configured MaxFrameBytes, never 0) and a body that is a protobuf Envelope
// (transport/internal/wirepb/wire.proto). The Envelope carries a request id
// (chosen by the client, never 0, echoed by the response), for requests the
// caller's remaining time as a duration in nanoseconds (0: no deadline, the
// server applies ServerConfig.DefaultTimeout), for responses an error code
// and message, and a oneof body: one of the requests (get, get-many, peek,
// write, lease) or one of their responses, or a ping or pong. A response
// with a non-zero error code has no body. Responses may come in any order.
// A ping (from the client, with an id of its own) is answered at once, from
// the server's read loop, by a pong with the same id; it is not a request,
// so no handler runs and MaxConcurrent does not apply.
//
// Durations (deadlines, TTLs, ages) always travel as durations, never as
// absolute times: clocks differ between nodes. Groups, keys, tags and
// messages travel as protobuf bytes, not strings, so keys need not be
// valid UTF-8.
//
// The generated code (package wirepb) encodes and decodes every message
// but the two hottest: a Get request and its successful response are
// written and parsed by hand-written protowire code (fastpath.go) that
// produces the same bytes and falls back to the generated decoder on
// anything unusual; tests and a fuzz target hold the two to each other.
//
// A gossip payload ([EncodeWrite]) is the two bytes "mw", one byte holding
// the protocol version, and a protobuf WriteRequest.
//
// # Error codes
//
// A Handler error maps to a code by errors.Is, in this order: [ErrNotFound],
// [ErrLoader], [ErrOverloaded], [ErrWrongProtocol], [ErrUnknownGroup],
// [ErrBadRequest], [context.DeadlineExceeded] (comes back as
// [ErrUnavailable] wrapping context.DeadlineExceeded), [ErrUnavailable],
// [context.Canceled] or [ErrClosed] (the node is shutting down; comes back
// as ErrUnavailable). Anything else, and a
// panicking handler, travels as "internal" and comes back as [ErrLoader]:
// the owner failed to produce the value, which is the caller's error rather
// than a reason to load again. A response the server cannot send because it
// is over its frame limit comes back as [ErrUnavailable] (wrapping
// [ErrFrameTooLarge]'s text): the peer could not serve it.
package transport
