package transport

import (
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// Fast paths for the hottest messages: a Get request and a successful Get
// response are encoded with protowire straight from the plain structs, and
// parsed straight into them, skipping the generated message types (their
// reflective sizing, oneof wrapper, message and intermediate []byte
// copies). The encoders produce exactly the bytes proto.Marshal produces
// for the same message (TestFastEncodersMatchProto). The parsers accept a
// subset of the encodings of wire.proto's Envelope and report ok == false
// for anything else (another body, an error response, a field with an
// unexpected wire type, corrupt input); the caller then takes the generic
// path, which has the final word, also on errors. FuzzDecodeEnvelope checks
// that whenever a fast path accepts input, the generic decoder accepts it too
// and yields the same result.
//
// Field numbers below mirror wire.proto.
const (
	fieldEnvID          = 1
	fieldEnvTimeout     = 2
	fieldEnvErrorCode   = 3
	fieldEnvTrace       = 5
	fieldEnvGetRequest  = 10
	fieldEnvGetResponse = 11
	// Every Envelope field from 10 on is a body of the oneof: a later body
	// replaces an earlier one, so the parsers defer on any other one.
	// There is no upper bound, so that a body added to wire.proto is
	// deferred too.
	fieldEnvFirstBody = 10

	fieldGetReqGroup = 1
	fieldGetReqKey   = 2

	fieldValue    = 1
	fieldValueTTL = 2
	fieldValueAge = 3
	fieldValueTag = 4
)

// fastGetRequest parses a request envelope whose body is a GetRequest.
func fastGetRequest(b []byte) (id uint64, timeout time.Duration, req GetRequest, ok bool) {
	if !fastGet {
		return 0, 0, req, false
	}
	var group, key []byte
	sawBody := false
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, 0, req, false
		}
		b = b[n:]
		switch {
		case (num == fieldEnvID || num == fieldEnvTimeout) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, 0, req, false
			}
			if num == fieldEnvID {
				id = v
			} else {
				timeout = time.Duration(int64(v))
			}
			b = b[m:]
		case num == fieldEnvGetRequest && typ == protowire.BytesType:
			body, m := protowire.ConsumeBytes(b)
			if m < 0 || !parseGetRequest(body, &group, &key) {
				return 0, 0, req, false
			}
			sawBody = true
			b = b[m:]
		case num >= fieldEnvFirstBody,
			num == fieldEnvID, num == fieldEnvTimeout,
			num == fieldEnvTrace: // a traced request: the generic path keeps its trace
			return 0, 0, req, false // another body, or an odd wire type
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return 0, 0, req, false
			}
			b = b[m:]
		}
	}
	if !sawBody || id == 0 {
		return 0, 0, req, false
	}
	return id, timeout, GetRequest{Group: string(group), Key: string(key)}, true
}

// parseGetRequest merges one encoded GetRequest into group and key (later
// occurrences of a field win, as in a protobuf merge).
func parseGetRequest(b []byte, group, key *[]byte) bool {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if (num == fieldGetReqGroup || num == fieldGetReqKey) && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if num == fieldGetReqGroup {
				*group = v
			} else {
				*key = v
			}
			b = b[m:]
			continue
		}
		if num == fieldGetReqGroup || num == fieldGetReqKey {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return true
}

// fastGetResponse parses a successful response envelope whose body is a
// GetResponse. The value is copied out of b; tags become strings.
func fastGetResponse(b []byte) (id uint64, resp GetResponse, ok bool) {
	if !fastGet {
		return 0, GetResponse{}, false
	}
	var value []byte
	sawBody := false
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, GetResponse{}, false
		}
		b = b[n:]
		switch {
		case num == fieldEnvID && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, GetResponse{}, false
			}
			id, b = v, b[m:]
		case num == fieldEnvGetResponse && typ == protowire.BytesType:
			body, m := protowire.ConsumeBytes(b)
			if m < 0 || !parseValue(body, &value, &resp.Value) {
				return 0, GetResponse{}, false
			}
			sawBody = true
			b = b[m:]
		case num == fieldEnvErrorCode,
			num >= fieldEnvFirstBody,
			num == fieldEnvID:
			return 0, GetResponse{}, false // an error, another body, or an odd wire type
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return 0, GetResponse{}, false
			}
			b = b[m:]
		}
	}
	if !sawBody || id == 0 {
		return 0, GetResponse{}, false
	}
	if len(value) > 0 {
		resp.Value.Value = append([]byte(nil), value...)
	}
	return id, resp, true
}

// parseValue merges one encoded value message (fields 1-4 of GetResponse,
// PeekResponse and KeyResult) into value (aliasing b) and v's other fields.
func parseValue(b []byte, value *[]byte, v *Value) bool {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case (num == fieldValue || num == fieldValueTag) && typ == protowire.BytesType:
			s, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if num == fieldValue {
				*value = s
			} else {
				v.Tags = append(v.Tags, string(s))
			}
			b = b[m:]
		case (num == fieldValueTTL || num == fieldValueAge) && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			if num == fieldValueTTL {
				v.TTL = time.Duration(int64(x))
			} else {
				v.Age = time.Duration(int64(x))
			}
			b = b[m:]
		case num >= fieldValue && num <= fieldValueTag:
			return false // odd wire type (packed tags, ...): generic path
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
		}
	}
	return true
}

// appendGetRequestFrame appends a complete frame (header and body) holding
// a Get request envelope, byte for byte what marshalFrame produces for the
// equivalent wirepb message (TestFastEncodersMatchProto).
func appendGetRequestFrame(b []byte, id uint64, timeout int64, req GetRequest) []byte {
	inner := sizeBytesField(fieldGetReqGroup, len(req.Group)) + sizeBytesField(fieldGetReqKey, len(req.Key))
	body := sizeVarintField(fieldEnvID, id) + sizeVarintField(fieldEnvTimeout, uint64(timeout)) +
		protowire.SizeTag(fieldEnvGetRequest) + protowire.SizeBytes(inner)
	b = appendUint32(b[:0], uint32(body))
	b = appendVarintField(b, fieldEnvID, id)
	b = appendVarintField(b, fieldEnvTimeout, uint64(timeout))
	b = protowire.AppendTag(b, fieldEnvGetRequest, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = appendStringField(b, fieldGetReqGroup, req.Group)
	b = appendStringField(b, fieldGetReqKey, req.Key)
	return b
}

// appendGetResponseFrame appends a complete frame holding a successful Get
// response envelope, byte for byte what marshalFrame produces for the
// equivalent wirepb message.
func appendGetResponseFrame(b []byte, id uint64, resp GetResponse) []byte {
	if !fastGet {
		return appendGetResponsePlain(b, id, resp)
	}
	inner := sizeBytesField(fieldValue, len(resp.Value.Value)) +
		sizeVarintField(fieldValueTTL, uint64(resp.TTL)) + sizeVarintField(fieldValueAge, uint64(resp.Age))
	for _, t := range resp.Tags {
		inner += protowire.SizeTag(fieldValueTag) + protowire.SizeBytes(len(t))
	}
	body := sizeVarintField(fieldEnvID, id) + protowire.SizeTag(fieldEnvGetResponse) + protowire.SizeBytes(inner)
	b = appendUint32(b[:0], uint32(body))
	b = appendVarintField(b, fieldEnvID, id)
	b = protowire.AppendTag(b, fieldEnvGetResponse, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	if len(resp.Value.Value) > 0 {
		b = protowire.AppendTag(b, fieldValue, protowire.BytesType)
		b = protowire.AppendBytes(b, resp.Value.Value)
	}
	b = appendVarintField(b, fieldValueTTL, uint64(resp.TTL))
	b = appendVarintField(b, fieldValueAge, uint64(resp.Age))
	for _, t := range resp.Tags {
		b = protowire.AppendTag(b, fieldValueTag, protowire.BytesType)
		b = protowire.AppendString(b, t)
	}
	return b
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Proto3 omits zero scalars and empty bytes; so do these helpers.

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func sizeBytesField(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// plainGetResponse holds the generated messages that encode a Get
// response without the fast path (fastGet false), pooled as a
// serverResponse's are.
type plainGetResponse struct {
	a    arena
	env  wirepb.Envelope
	body wirepb.Envelope_GetResponse
	msg  wirepb.GetResponse
}

var plainGetResponses = sync.Pool{New: func() any {
	p := new(plainGetResponse)
	p.body.GetResponse = &p.msg
	return p
}}

// appendGetResponsePlain is appendGetResponseFrame by the generated code.
func appendGetResponsePlain(b []byte, id uint64, resp GetResponse) []byte {
	p := plainGetResponses.Get().(*plainGetResponse)
	encodeGetResponse(&p.a, &p.msg, resp)
	p.env.Id, p.env.Body = id, &p.body
	b, _ = marshalFrame(b, &p.env, maxFrameLimit) // the caller checks the size
	p.a.reset()
	p.msg.Value, p.msg.Tags = nil, nil
	plainGetResponses.Put(p)
	return b
}
