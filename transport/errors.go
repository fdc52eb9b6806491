package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// Errors returned by the transport.
//
// The first group crosses the wire: a [Handler] error that matches one of
// them (with [errors.Is]) travels as a code with a short message, and the
// [Client] returns the same sentinel, wrapped with that message
// ("transport: loader error: db down"), so errors.Is works across nodes.
// The message is the handler error's text without the sentinel's own text
// in front (the receiver puts it back once), cut to [MaxErrorMessage] bytes
// by the sender and again by the receiver.
// A handler error that matches none of them travels as an "internal" code and
// comes back as [ErrLoader]: the owner failed to produce the value, which is
// the caller's error and not a reason to load again. A handler that returns
// because its context ended ([context.DeadlineExceeded],
// [context.Canceled]) or because its node is shutting down ([ErrClosed])
// comes back as [ErrUnavailable], and additionally wraps
// [context.DeadlineExceeded] when that was the cause.
//
// The second group is local only. [ErrUnavailable] means the peer could not
// answer (dial or connection failure, connection closed mid-request, client
// deadline exceeded): the caller should fall back. On a client deadline the
// error wraps both ErrUnavailable and [context.DeadlineExceeded].
var (
	// ErrNotFound: the key does not exist (the loader's not-found).
	ErrNotFound = errors.New("transport: not found")
	// ErrLoader: the remote loader, or the remote handler, failed.
	ErrLoader = errors.New("transport: loader error")
	// ErrLoaderPanic: the remote loader panicked. A panic is a loader
	// failure: an error that wraps ErrLoaderPanic also wraps [ErrLoader].
	// Its message says no more: the panic value and the stack stay in the
	// owner's log.
	ErrLoaderPanic = errors.New("transport: loader panicked")
	// ErrOverloaded: the server refused the request because it was already
	// running ServerConfig.MaxConcurrent requests.
	ErrOverloaded = errors.New("transport: overloaded")
	// ErrWrongProtocol: the peer speaks another [ProtocolVersion], or a gossip
	// payload was encoded by one. The connection is closed.
	ErrWrongProtocol = errors.New("transport: wrong protocol version")
	// ErrUnknownGroup: the peer has no group by that name.
	ErrUnknownGroup = errors.New("transport: unknown group")
	// ErrBadRequest: the peer rejected the request as invalid.
	ErrBadRequest = errors.New("transport: bad request")

	// ErrFrameTooLarge: a frame exceeds the configured maximum. Incoming
	// frames over the limit close the connection; outgoing ones are not sent.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrMalformed: bytes that are not a valid frame, envelope or payload.
	ErrMalformed = errors.New("transport: malformed frame")
	// ErrClosed: the Client or Server was closed. A Handler may return an
	// error wrapping it when its node is shutting down: the caller then
	// gets ErrUnavailable and falls back.
	ErrClosed = errors.New("transport: closed")
	// ErrBadConfig: a ServerConfig or ClientConfig that cannot be used, such
	// as a TLS config that would verify peers against the system roots.
	ErrBadConfig = errors.New("transport: bad config")
	// ErrUnavailable: the peer could not answer (dial or connection failure,
	// timeout). The caller falls back.
	ErrUnavailable = errors.New("transport: peer unavailable")
)

// wireErrors pairs the sentinels that cross the wire with their codes, in
// the order codeOf tests them; errorOf maps the codes back. CODE_UNAVAILABLE
// and CODE_DEADLINE_EXCEEDED are handled beside it: several local errors
// map to them.
var wireErrors = [...]struct {
	code wirepb.Code
	err  error
}{
	{wirepb.Code_CODE_NOT_FOUND, ErrNotFound},
	{wirepb.Code_CODE_LOADER_PANIC, ErrLoaderPanic}, // before ErrLoader, which it wraps on the caller's side
	{wirepb.Code_CODE_LOADER, ErrLoader},
	{wirepb.Code_CODE_OVERLOADED, ErrOverloaded},
	{wirepb.Code_CODE_WRONG_PROTOCOL, ErrWrongProtocol},
	{wirepb.Code_CODE_UNKNOWN_GROUP, ErrUnknownGroup},
	{wirepb.Code_CODE_BAD_REQUEST, ErrBadRequest},
}

// codeOf maps a handler error to its wire code.
func codeOf(err error) wirepb.Code {
	if err == nil {
		return wirepb.Code_CODE_OK
	}
	for _, we := range wireErrors {
		if errors.Is(err, we.err) {
			return we.code
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return wirepb.Code_CODE_DEADLINE_EXCEEDED
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		return wirepb.Code_CODE_UNAVAILABLE
	default:
		return wirepb.Code_CODE_INTERNAL
	}
}

// MaxErrorMessage is the most bytes of text that cross the wire with an
// error's code. A longer message is cut to that length, ending in "...".
const MaxErrorMessage = 256

// sentinelOf returns the sentinel a Client returns for code: the one whose
// text leads the error.
func sentinelOf(code wirepb.Code) error {
	switch code {
	case wirepb.Code_CODE_UNAVAILABLE, wirepb.Code_CODE_DEADLINE_EXCEEDED:
		return ErrUnavailable
	}
	for _, we := range wireErrors {
		if we.code == code {
			return we.err
		}
	}
	return ErrLoader // CODE_LOADER, CODE_INTERNAL, codes from a newer peer
}

// messageOf returns the message that goes on the wire with err's code:
// its text, without its class's text in front, bounded.
func messageOf(err error) string {
	return trimMessage(sentinelOf(codeOf(err)), err.Error())
}

// trimMessage removes sentinel's text (and ": ") from the front of msg, as
// often as it is there (a peer of an older version sent it, and may have
// repeated it), and cuts msg to MaxErrorMessage bytes.
func trimMessage(sentinel error, msg string) string {
	prefix := sentinel.Error()
	for strings.HasPrefix(msg, prefix) {
		rest := msg[len(prefix):]
		if rest == "" {
			return ""
		}
		if !strings.HasPrefix(rest, ": ") {
			break
		}
		msg = rest[2:]
	}
	return clip(msg, MaxErrorMessage)
}

// clip cuts s to at most n bytes, marking the cut with "...". It cuts
// before a UTF-8 sequence rather than inside it.
func clip(s string, n int) string {
	const more = "..."
	if len(s) <= n {
		return s
	}
	i := n - len(more)
	for j := 0; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	return s[:i] + more
}

// errorOf turns a wire code and remote message back into an error wrapping
// the matching sentinel. CODE_OK gives nil. Unknown codes (from a newer peer)
// are treated as CODE_INTERNAL. The message is trimmed as by messageOf,
// whatever the peer sent.
func errorOf(code wirepb.Code, msg []byte) error {
	if code == wirepb.Code_CODE_OK {
		return nil
	}
	sentinel := sentinelOf(code)
	text := trimMessage(sentinel, string(msg))
	switch code {
	case wirepb.Code_CODE_DEADLINE_EXCEEDED:
		if text == "" {
			return fmt.Errorf("%w: %w", ErrUnavailable, context.DeadlineExceeded)
		}
		return fmt.Errorf("%w: %w: remote: %s", ErrUnavailable, context.DeadlineExceeded, text)
	case wirepb.Code_CODE_LOADER_PANIC:
		return &remoteError{is: []error{ErrLoaderPanic, ErrLoader}, msg: text}
	}
	if text == "" {
		return sentinel
	}
	return fmt.Errorf("%w: %s", sentinel, text)
}

// remoteError is an error from a peer that wraps several sentinels: the
// first gives its text, followed by the peer's message.
type remoteError struct {
	is  []error
	msg string
}

func (e *remoteError) Error() string {
	if e.msg == "" {
		return e.is[0].Error()
	}
	return e.is[0].Error() + ": " + e.msg
}

func (e *remoteError) Unwrap() []error { return e.is }
