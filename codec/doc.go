// Package codec converts typed values to and from the bytes that meshcache
// stores and sends between nodes.
//
// A [Codec] is one small interface with two methods, so a user codec is a
// single type (or a [Funcs] value wrapping two functions). The package ships
// codecs for the common cases:
//
//   - [Bytes]: the identity codec for []byte.
//   - [String]: string ⇄ []byte.
//   - [JSON]: encoding/json.
//   - [Gob]: encoding/gob, one self-describing stream per value.
//   - [Proto]: google.golang.org/protobuf messages such as *pb.User.
//
// # Errors
//
// Every failure of a Marshal method wraps [ErrEncode] and every failure of an
// Unmarshal method wraps [ErrDecode], so callers can tell "my value could not
// be encoded" from "the bytes in the cache are not a valid V" with
// [errors.Is]. The underlying error is wrapped as well, so [errors.As] still
// finds, for example, a *json.SyntaxError. Unmarshal never panics on
// malformed input: the bytes may come from another node, or from an older
// version of the program. (Methods of V itself, such as an UnmarshalJSON that
// panics, are the exception; [Gob] recovers even those.)
//
// # Concurrency and ownership
//
// All codecs in this package are stateless and safe for concurrent use by
// multiple goroutines. Implementations of [Codec] written by users must be too.
//
// Marshal returns a slice that the caller owns, except for [Bytes], which
// returns its argument. Unmarshal does not keep data after it returns, except
// for [Bytes], whose result is data itself; a caller that reuses the buffer
// passed to Unmarshal must therefore copy the result of [Bytes] first.
package codec
