package peers

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// protocolVersion is the version of this package's gossip payloads (node
// metadata and broadcast envelopes). Members must speak the same one.
//
// 2: broadcast envelopes carry a hop count (broadcast.go).
// 3: memberlist names carry the incarnation (see [incarnationName]).
const protocolVersion = 3

// metaFormat is the version byte that starts every encoded metadata record.
// Later formats may only append fields, so a decoder accepts any format
// number >= 1, reads the fields its format has and ignores trailing bytes.
//
// 2: a flags byte follows the boot id.
const metaFormat = 2

// Bits of the flags byte (format 2). Unknown bits are ignored.
const (
	// metaLeaving: the node is leaving gracefully (see [Cluster.Leave]).
	metaLeaving = 1 << 0
)

// meta is what a node advertises about itself in memberlist's node metadata.
//
// Wire format (format 2):
//
//	byte     format (2)
//	uvarint  protocol version
//	uvarint  len, bytes  RPC address
//	uvarint  len, bytes  fingerprint
//	8 bytes  boot id, big endian
//	byte     flags (format >= 2): bit 0 leaving
//	...      ignored (room for later formats)
type meta struct {
	Protocol    uint64
	RPCAddr     string
	Fingerprint string
	Boot        uint64 // random per Cluster: tells a restart from a comeback
	// Leaving: the node announced a graceful leave just before
	// memberlist's own leave message (memberlist does not tell a leave from
	// a failure in its NotifyLeave hook).
	Leaving bool
}

// encodeMeta returns m's wire form.
func encodeMeta(m meta) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(m.RPCAddr)+len(m.Fingerprint)+8+1)
	b = append(b, metaFormat)
	b = binary.AppendUvarint(b, m.Protocol)
	b = binary.AppendUvarint(b, uint64(len(m.RPCAddr)))
	b = append(b, m.RPCAddr...)
	b = binary.AppendUvarint(b, uint64(len(m.Fingerprint)))
	b = append(b, m.Fingerprint...)
	b = binary.BigEndian.AppendUint64(b, m.Boot)
	var flags byte
	if m.Leaving {
		flags |= metaLeaving
	}
	return append(b, flags)
}

// decodeMeta parses b. It never panics; any malformed input returns an error
// wrapping errMeta.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty", errMeta)
	}
	if b[0] < 1 {
		return m, fmt.Errorf("%w: format %d", errMeta, b[0])
	}
	r := metaReader{b: b[1:]}
	m.Protocol = r.uvarint()
	m.RPCAddr = r.str()
	m.Fingerprint = r.str()
	m.Boot = r.fixed64()
	if b[0] >= 2 {
		m.Leaving = r.byte()&metaLeaving != 0
	}
	if r.err != nil {
		return meta{}, fmt.Errorf("%w: %w", errMeta, r.err)
	}
	return m, nil
}

// metaReader consumes a byte slice and remembers the first error; later reads
// after an error return zero values.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string of %d bytes, %d left", n, len(r.b))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *metaReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = errors.New("flags missing")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *metaReader) fixed64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = fmt.Errorf("boot id truncated: %d bytes", len(r.b))
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// compatible reports whether a member advertising m may join a cluster whose
// local fingerprint is fp. The error wraps [ErrIncompatible].
func compatible(name string, m meta, fp string) error {
	if m.Protocol != protocolVersion {
		return fmt.Errorf("%w: member %q speaks peers protocol %d, want %d",
			ErrIncompatible, name, m.Protocol, protocolVersion)
	}
	if m.Fingerprint != fp {
		return fmt.Errorf("%w: member %q has fingerprint %q, want %q",
			ErrIncompatible, name, m.Fingerprint, fp)
	}
	return nil
}

// checkNode splits memberlist's name of a node into its name and
// incarnation, decodes its metadata and checks both against fp. The
// incarnation in the name must be the boot id of the metadata.
func checkNode(mlName string, raw []byte, fp string) (string, meta, error) {
	name, inc, ok := splitIncarnation(mlName)
	if !ok {
		return "", meta{}, fmt.Errorf("%w: member %q: no incarnation in its name", ErrIncompatible, mlName)
	}
	m, err := checkMeta(name, raw, fp)
	if err != nil {
		return "", meta{}, err
	}
	if m.Boot != inc {
		return "", meta{}, fmt.Errorf("%w: member %q: incarnation %016x in its metadata", ErrIncompatible, mlName, m.Boot)
	}
	return name, m, nil
}

// checkMeta decodes raw metadata of member name and checks it against fp.
func checkMeta(name string, raw []byte, fp string) (meta, error) {
	m, err := decodeMeta(raw)
	if err != nil {
		return meta{}, fmt.Errorf("%w: member %q: %w", ErrIncompatible, name, err)
	}
	if err := compatible(name, m, fp); err != nil {
		return meta{}, err
	}
	return m, nil
}
