package codec

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"reflect"
)

// JSON returns a codec that encodes values of V with [encoding/json].
//
// Marshal uses [json.Marshal], so V's fields follow the usual json struct tags
// and [json.Marshaler] implementations. Unmarshal uses [json.Unmarshal] into a
// new V: the whole of data must be one JSON value (trailing data is an error),
// and the JSON literal null decodes to the zero V without error. The result
// does not alias data.
//
// The codec is safe for concurrent use.
func JSON[V any]() Codec[V] { return jsonCodec[V]{} }

type jsonCodec[V any] struct{}

func (jsonCodec[V]) Marshal(v V) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, wrap(ErrEncode, "json", err)
	}
	return b, nil
}

func (jsonCodec[V]) Unmarshal(data []byte) (V, error) {
	var v V
	if err := json.Unmarshal(data, &v); err != nil {
		var zero V
		return zero, wrap(ErrDecode, "json", err)
	}
	return v, nil
}

// Gob returns a codec that encodes values of V with [encoding/gob].
//
// Each Marshal uses a fresh [gob.Encoder], so every encoded value is a
// self-describing gob stream (type definitions followed by the value) that
// any process can decode on its own, at the cost of a few dozen bytes of type
// information per value. Unmarshal decodes exactly one value with a fresh
// [gob.Decoder]; bytes left over after it are an error. The result does not
// alias data.
//
// V is encoded as its static type: if V is an interface type (such as any),
// values travel as interface values, and their concrete types must be
// registered with [gob.Register] in every process, as gob requires. A nil
// pointer cannot be encoded by gob and makes Marshal fail with [ErrEncode].
// Gob's rules apply otherwise: only exported fields travel, and pointers are
// flattened.
//
// A panic inside encoding/gob (gob panics on some inputs instead of returning
// an error) is converted to an error wrapping [ErrEncode] or [ErrDecode].
//
// The codec is safe for concurrent use.
func Gob[V any]() Codec[V] { return gobCodec[V]{} }

type gobCodec[V any] struct{}

func (gobCodec[V]) Marshal(v V) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("%w: gob: panic: %v", ErrEncode, p)
		}
	}()
	// The address of v makes EncodeValue see V itself, so that an interface
	// V is sent as an interface value and Unmarshal, which decodes into a V,
	// accepts it.
	rv := reflect.ValueOf(&v).Elem()
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, fmt.Errorf("%w: gob: cannot encode nil pointer of type %s", ErrEncode, rv.Type())
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).EncodeValue(rv); err != nil {
		return nil, wrap(ErrEncode, "gob", err)
	}
	return buf.Bytes(), nil
}

func (gobCodec[V]) Unmarshal(data []byte) (v V, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero V
			v, err = zero, fmt.Errorf("%w: gob: panic: %v", ErrDecode, p)
		}
	}()
	// bytes.Reader is an io.ByteReader, so the decoder reads from it directly
	// without buffering, and r.Len() is exactly what it left unread.
	r := bytes.NewReader(data)
	if err := gob.NewDecoder(r).Decode(&v); err != nil {
		var zero V
		return zero, wrap(ErrDecode, "gob", err)
	}
	if r.Len() != 0 {
		var zero V
		return zero, fmt.Errorf("%w: gob: %d bytes of trailing data", ErrDecode, r.Len())
	}
	return v, nil
}
