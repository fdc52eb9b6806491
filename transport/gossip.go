package transport

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// gossipMagic opens every gossip payload, followed by one byte holding the
// protocol version and then a protobuf WriteRequest.
var gossipMagic = [2]byte{'m', 'w'}

const gossipHeaderLen = len(gossipMagic) + 1

// EncodeWrite encodes req as a gossip payload, the fallback path of a write
// for peers that did not acknowledge it. Only package transport knows the
// format; [DecodeWrite] reverses it. It fails with an error wrapping
// [ErrBadRequest] if req.Op or req.Phase is not a defined value. It is safe
// for concurrent use and does not retain req.
func EncodeWrite(req WriteRequest) ([]byte, error) {
	var (
		a arena
		m wirepb.WriteRequest
	)
	if err := encodeWriteRequest(&a, &m, req); err != nil {
		return nil, fmt.Errorf("transport: encode write: %w", err)
	}
	b := make([]byte, gossipHeaderLen, gossipHeaderLen+proto.Size(&m))
	copy(b, gossipMagic[:])
	b[len(gossipMagic)] = ProtocolVersion
	b, err := proto.MarshalOptions{}.MarshalAppend(b, &m)
	if err != nil {
		return nil, fmt.Errorf("transport: encode write: %w", err)
	}
	return b, nil
}

// DecodeWrite decodes a payload made by [EncodeWrite]. Errors wrap
// [ErrMalformed] (not a write payload, corrupt, or an undefined Op or Phase)
// or [ErrWrongProtocol] (encoded by a node with another [ProtocolVersion]).
// The result shares no memory with b. It never panics, whatever b holds.
func DecodeWrite(b []byte) (WriteRequest, error) {
	if len(b) < gossipHeaderLen || [2]byte(b[:2]) != gossipMagic {
		return WriteRequest{}, fmt.Errorf("%w: not a write payload", ErrMalformed)
	}
	if v := b[len(gossipMagic)]; v != ProtocolVersion {
		return WriteRequest{}, fmt.Errorf("%w: write payload version %d, want %d", ErrWrongProtocol, v, ProtocolVersion)
	}
	var m wirepb.WriteRequest
	if err := (proto.UnmarshalOptions{}).Unmarshal(b[gossipHeaderLen:], &m); err != nil {
		return WriteRequest{}, fmt.Errorf("%w: write payload: %w", ErrMalformed, err)
	}
	req, err := decodeWriteRequest(&m)
	if err != nil {
		return WriteRequest{}, fmt.Errorf("%w: write payload: %w", ErrMalformed, err)
	}
	return req, nil
}
