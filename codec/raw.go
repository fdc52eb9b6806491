package codec

// Bytes returns the identity codec for []byte.
//
// Marshal returns v itself and Unmarshal returns data itself: neither copies,
// and neither ever fails. The result of Unmarshal therefore aliases data; a
// caller that modifies or reuses data must copy the result first (and a caller
// that modifies a marshalled slice modifies the value it came from). A nil
// slice round-trips as nil and an empty one as empty.
//
// The codec is safe for concurrent use.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Marshal(v []byte) ([]byte, error)      { return v, nil }
func (bytesCodec) Unmarshal(data []byte) ([]byte, error) { return data, nil }

// String returns a codec for string that stores its bytes unchanged.
//
// Marshal copies the string into a new slice and Unmarshal copies data into a
// new string, so neither result aliases its input. Any byte sequence is a
// valid Go string, so Unmarshal never fails and does not check UTF-8.
//
// The codec is safe for concurrent use.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Marshal(v string) ([]byte, error)      { return []byte(v), nil }
func (stringCodec) Unmarshal(data []byte) (string, error) { return string(data), nil }
