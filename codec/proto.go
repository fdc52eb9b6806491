package codec

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Proto returns a codec for protobuf messages of type M, using
// google.golang.org/protobuf. M is a generated message pointer type such as
// *pb.User (or a well-known type such as *wrapperspb.StringValue).
//
// Marshal uses deterministic encoding (map entries sorted by key), so equal
// messages give equal bytes within one build of the program. A nil M encodes
// as an empty message, as protobuf treats a nil message as empty; it decodes
// back as a new empty message, not nil. Marshal fails with [ErrEncode] on a
// message that protobuf cannot encode, such as invalid UTF-8 in a proto3
// string field or a missing proto2 required field.
//
// Unmarshal needs a new, empty M to decode into. A type parameter gives no
// value to call New on, so Proto asks the zero M: generated code implements
// ProtoReflect on a nil receiver, so M(nil).ProtoReflect().Type().New() builds
// a fresh message of the right type without reflection on Go types or a
// registry lookup. This is done once, when Proto is called. If M has no usable
// zero value (M is an interface type such as [proto.Message], or a message
// implementation whose nil value cannot report its type, such as
// *dynamicpb.Message), Marshal still works but every Unmarshal returns an
// error wrapping [ErrDecode]. The result does not alias data.
//
// The codec is safe for concurrent use.
func Proto[M proto.Message]() Codec[M] {
	mt, err := messageType[M]()
	return protoCodec[M]{typ: mt, typErr: err}
}

type protoCodec[M proto.Message] struct {
	typ    protoreflect.MessageType // nil if typErr != nil
	typErr error
}

// messageType returns the message type of M, found through the zero M.
func messageType[M proto.Message]() (mt protoreflect.MessageType, err error) {
	var zero M
	defer func() {
		if p := recover(); p != nil {
			mt, err = nil, fmt.Errorf("codec: proto: %T has no usable nil value: %v", zero, p)
		}
	}()
	if any(zero) == nil {
		return nil, fmt.Errorf("codec: proto: type parameter is an interface type; use a concrete message type such as *pb.User")
	}
	mt = zero.ProtoReflect().Type()
	if mt == nil {
		return nil, fmt.Errorf("codec: proto: %T reports no message type", zero)
	}
	// Check once that the type builds messages of type M, so Unmarshal's type
	// assertion cannot fail.
	if _, ok := mt.New().Interface().(M); !ok {
		return nil, fmt.Errorf("codec: proto: %T builds messages of another type", zero)
	}
	return mt, nil
}

func (protoCodec[M]) Marshal(m M) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, wrap(ErrEncode, "proto", err)
	}
	return b, nil
}

func (c protoCodec[M]) Unmarshal(data []byte) (M, error) {
	var zero M
	if c.typErr != nil {
		return zero, fmt.Errorf("%w: %w", ErrDecode, c.typErr)
	}
	m := c.typ.New().Interface().(M)
	if err := proto.Unmarshal(data, m); err != nil {
		return zero, wrap(ErrDecode, "proto", err)
	}
	return m, nil
}
