package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// DefaultMaxFrameBytes is the frame size limit used when a config leaves
// MaxFrameBytes zero.
const DefaultMaxFrameBytes = 64 << 20

const (
	frameHeaderLen = 4
	prefaceLen     = 8

	// maxFrameLimit is the largest usable frame body limit: a body length
	// must fit the uint32 header (with the header, so that a whole frame's
	// length does too) and an int. Configured limits above it are clamped.
	maxFrameLimit = min(math.MaxUint32-frameHeaderLen, math.MaxInt)

	// eagerFrameBytes is the largest frame body read into a buffer allocated
	// at once. A longer frame's buffer grows as its bytes arrive, so a peer
	// that claims a large frame and sends nothing cannot make us allocate it.
	eagerFrameBytes = 1 << 20
	// keepFrameBytes is the largest read buffer kept between frames.
	keepFrameBytes = 1 << 20
)

// frameLimit returns the frame body limit for a configured MaxFrameBytes:
// DefaultMaxFrameBytes for zero (or a negative value), at most maxFrameLimit.
func frameLimit(n int) int {
	if n <= 0 {
		return DefaultMaxFrameBytes
	}
	return min(n, maxFrameLimit)
}

// prefaceMagic opens every connection, followed by the big-endian uint32
// protocol version.
var prefaceMagic = [4]byte{'M', 'S', 'H', 'C'}

// appendPreface appends the connection preface for version to b.
func appendPreface(b []byte, version uint32) []byte {
	b = append(b, prefaceMagic[:]...)
	return binary.BigEndian.AppendUint32(b, version)
}

// parsePreface returns the version in a preface; bytes without the magic
// give ErrMalformed.
func parsePreface(b []byte) (uint32, error) {
	if len(b) != prefaceLen || [4]byte(b[:4]) != prefaceMagic {
		return 0, fmt.Errorf("%w: bad connection preface %q", ErrMalformed, b)
	}
	return binary.BigEndian.Uint32(b[4:]), nil
}

// frameReader reads length-prefixed frames: a big-endian uint32 body length,
// then the body. It is not safe for concurrent use: one goroutine at a time
// reads with it (on a client connection, whoever holds the read role).
//
// A read that fails with a timeout (a read deadline passed) can be resumed:
// the frameReader keeps the part of the frame read so far, and the next
// call to next goes on from there. After any other error the stream is
// out of step and the caller must stop reading.
type frameReader struct {
	r   *bufio.Reader
	max int
	hdr [frameHeaderLen]byte
	hn  int // header bytes read of the frame being read
	buf []byte
	// size is the body length of the frame being read, once its header is
	// complete; -1 between frames. got is how much of its body is in buf.
	size, got int
}

func newFrameReader(r io.Reader, size, maxFrame int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, size), max: maxFrame, size: -1}
}

// next returns the next frame's body, valid until the following call.
//
// It returns io.EOF when the input ends cleanly between frames, an error
// wrapping ErrFrameTooLarge for a body over the limit (without reading it),
// an error wrapping ErrMalformed for an empty body or input that ends inside
// a frame, and any other read error as is (a timeout can be resumed: see
// frameReader).
func (fr *frameReader) next() ([]byte, error) {
	if fr.size < 0 {
		if fr.hn == 0 && cap(fr.buf) > keepFrameBytes {
			fr.buf = nil // a huge frame passed; do not pin its buffer
		}
		for fr.hn < frameHeaderLen {
			n, err := fr.r.Read(fr.hdr[fr.hn:])
			fr.hn += n
			if fr.hn < frameHeaderLen && err != nil {
				if fr.hn > 0 && errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%w: truncated frame header: %w", ErrMalformed, io.ErrUnexpectedEOF)
				}
				return nil, err
			}
		}
		n := uint64(binary.BigEndian.Uint32(fr.hdr[:]))
		if n > uint64(fr.max) {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
		}
		fr.hn, fr.size, fr.got = 0, int(n), 0
		if fr.size > cap(fr.buf) && fr.size <= eagerFrameBytes {
			fr.buf = make([]byte, fr.size)
		}
		// A larger frame's buffer grows as its bytes arrive, so that a
		// peer that claims a large frame and sends nothing cannot make
		// us allocate it.
		fr.buf = fr.buf[:min(fr.size, cap(fr.buf))]
	}
	for fr.got < fr.size {
		if fr.got == len(fr.buf) {
			fr.buf = slices.Grow(fr.buf, min(fr.size-fr.got, max(fr.got, eagerFrameBytes)))
			fr.buf = fr.buf[:min(fr.size, cap(fr.buf))]
		}
		n, err := fr.r.Read(fr.buf[fr.got:])
		fr.got += n
		if fr.got < fr.size && err != nil {
			return nil, truncated(err)
		}
	}
	fr.size = -1
	return fr.buf, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame: %w", ErrMalformed, io.ErrUnexpectedEOF)
	}
	return err
}

// marshalFrame encodes env as one frame (header and body) into buf, reusing
// its capacity. A body over maxFrame gives ErrFrameTooLarge.
func marshalFrame(buf []byte, env *wirepb.Envelope, maxFrame int) ([]byte, error) {
	buf = append(buf[:0], 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, env)
	if err != nil {
		return buf, fmt.Errorf("transport: marshal frame: %w", err)
	}
	if err := checkFrameSize(buf, maxFrame); err != nil {
		return buf, err
	}
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-frameHeaderLen))
	return buf, nil
}

// checkFrameSize reports ErrFrameTooLarge for an encoded frame (header and
// body) whose body is over maxFrame.
func checkFrameSize(frame []byte, maxFrame int) error {
	if n := len(frame) - frameHeaderLen; n > maxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxFrame)
	}
	return nil
}

// unmarshalEnvelope decodes a frame body into env (which it resets) and
// checks the envelope's invariants: a valid protobuf message with a non-zero
// id. Errors wrap ErrMalformed.
func unmarshalEnvelope(b []byte, env *wirepb.Envelope) error {
	if err := (proto.UnmarshalOptions{}).Unmarshal(b, env); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if env.Id == 0 {
		return fmt.Errorf("%w: envelope without id", ErrMalformed)
	}
	return nil
}

// envelopeID returns the id field of an encoded envelope without decoding
// the rest, checking only that the top level is well-formed protobuf. Errors
// wrap ErrMalformed.
func envelopeID(b []byte) (uint64, error) {
	var id uint64
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(m))
			}
			id, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(m))
		}
		b = b[m:]
	}
	if id == 0 {
		return 0, fmt.Errorf("%w: envelope without id", ErrMalformed)
	}
	return id, nil
}

// consumeTag is protowire.ConsumeTag, also refusing (n < 0) a field number
// above protowire.MaxValidNumber, which ConsumeTag accepts but the
// generated decoder rejects: the hand-written parsers must not accept what
// it refuses.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}
