package codec

import (
	"errors"
	"fmt"
)

// Errors returned by the codecs in this package. Each is wrapped, with the
// codec's name and the underlying cause, so test for them with [errors.Is].
var (
	// ErrDecode is wrapped by every error returned from an Unmarshal method:
	// the bytes are not a valid encoding of the codec's type.
	ErrDecode = errors.New("codec: decode")

	// ErrEncode is wrapped by every error returned from a Marshal method: the
	// value cannot be encoded (for example a channel in JSON, a nil pointer in
	// gob, or invalid UTF-8 in a proto3 string field).
	ErrEncode = errors.New("codec: encode")
)

// Codec converts values of type V to bytes and back.
//
// Implementations must be safe for concurrent use by multiple goroutines.
//
// Marshal encodes v. The returned slice belongs to the caller unless the
// implementation documents otherwise ([Bytes] returns v itself). A failure
// should wrap [ErrEncode].
//
// Unmarshal decodes data into a new V. The returned V belongs to the caller.
// An implementation may keep references into data in its result (the caller
// must then not modify data while it uses the result) but must say so in its
// documentation; [Bytes] is the only codec in this package that does. A
// failure must wrap [ErrDecode], and malformed data must produce an error,
// never a panic.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte) (V, error)
}

// Funcs adapts a pair of functions to a [Codec], as [net/http.HandlerFunc]
// adapts a function to a Handler:
//
//	c := codec.Funcs[time.Time]{
//		MarshalFunc:   func(t time.Time) ([]byte, error) { return t.MarshalBinary() },
//		UnmarshalFunc: func(b []byte) (t time.Time, err error) { err = t.UnmarshalBinary(b); return t, err },
//	}
//
// Errors from MarshalFunc are wrapped with [ErrEncode] and errors from
// UnmarshalFunc with [ErrDecode], unless they already wrap it, so a Funcs
// value keeps the error contract of [Codec] without the functions knowing
// about it. A nil function makes the corresponding method return an error.
//
// A Funcs value is safe for concurrent use if its functions are. It does not
// recover panics raised by the functions.
type Funcs[V any] struct {
	// MarshalFunc encodes a value. Its result is returned as is.
	MarshalFunc func(v V) ([]byte, error)
	// UnmarshalFunc decodes data. If it keeps references into data in its
	// result, say so where the codec is documented.
	UnmarshalFunc func(data []byte) (V, error)
}

// Marshal calls f.MarshalFunc(v) and wraps its error with [ErrEncode].
func (f Funcs[V]) Marshal(v V) ([]byte, error) {
	if f.MarshalFunc == nil {
		return nil, fmt.Errorf("%w: Funcs.MarshalFunc is nil", ErrEncode)
	}
	b, err := f.MarshalFunc(v)
	if err != nil {
		return nil, wrap(ErrEncode, "funcs", err)
	}
	return b, nil
}

// Unmarshal calls f.UnmarshalFunc(data) and wraps its error with [ErrDecode].
// On error it returns the zero V.
func (f Funcs[V]) Unmarshal(data []byte) (V, error) {
	var zero V
	if f.UnmarshalFunc == nil {
		return zero, fmt.Errorf("%w: Funcs.UnmarshalFunc is nil", ErrDecode)
	}
	v, err := f.UnmarshalFunc(data)
	if err != nil {
		return zero, wrap(ErrDecode, "funcs", err)
	}
	return v, nil
}

// wrap returns err wrapped with sentinel (ErrEncode or ErrDecode) and the
// codec's name, so both errors.Is(sentinel) and errors.As on the cause work.
// An err that already wraps sentinel is returned unchanged.
func wrap(sentinel error, name string, err error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", sentinel, name, err)
}
