package transport

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// The Get fast path (fastpath.go) next to the plain path it replaces: the
// generated wirepb messages with proto.Marshal and proto.Unmarshal, plus
// the conversions to and from the plain structs (convert.go), with the
// same pooled envelope, oneof wrapper, message and arena every other
// request kind uses. Each pair does the same job on the same bytes:
//
//	go test -run '^$' -bench 'GetCodec' -benchmem -count 10 ./transport > codec.txt
//	benchstat -col /impl codec.txt

// plainGetCodec holds what the plain path reuses between calls, as a
// pooled call or serverResponse does.
type plainGetCodec struct {
	a       arena
	env     wirepb.Envelope
	getReq  wirepb.Envelope_GetRequest
	reqMsg  wirepb.GetRequest
	getResp wirepb.Envelope_GetResponse
	respMsg wirepb.GetResponse
}

func newPlainGetCodec() *plainGetCodec {
	p := &plainGetCodec{}
	p.getReq.GetRequest = &p.reqMsg
	p.getResp.GetResponse = &p.respMsg
	return p
}

// requestFrame encodes a Get request frame into buf, as the client would
// without the fast path.
func (p *plainGetCodec) requestFrame(buf []byte, id uint64, timeout int64, req GetRequest) []byte {
	p.a.reset()
	encodeGetRequest(&p.a, &p.reqMsg, req)
	p.env.Id, p.env.TimeoutNanos, p.env.Body = id, timeout, &p.getReq
	buf, err := marshalFrame(buf, &p.env, DefaultMaxFrameBytes)
	if err != nil {
		panic(err)
	}
	return buf
}

// responseFrame encodes a successful Get response frame into buf, as the
// server would without the fast path.
func (p *plainGetCodec) responseFrame(buf []byte, id uint64, resp GetResponse) []byte {
	p.a.reset()
	encodeGetResponse(&p.a, &p.respMsg, resp)
	p.env.Id, p.env.TimeoutNanos, p.env.Body = id, 0, &p.getResp
	buf, err := marshalFrame(buf, &p.env, DefaultMaxFrameBytes)
	if err != nil {
		panic(err)
	}
	return buf
}

// parseRequest decodes a Get request body, as the server would without
// the fast path (dispatch).
func (p *plainGetCodec) parseRequest(body []byte) (uint64, GetRequest, bool) {
	if err := unmarshalEnvelope(body, &p.env); err != nil {
		return 0, GetRequest{}, false
	}
	b, ok := p.env.Body.(*wirepb.Envelope_GetRequest)
	if !ok {
		return 0, GetRequest{}, false
	}
	id, req := p.env.Id, decodeGetRequest(b.GetRequest)
	proto.Reset(&p.env)
	return id, req, true
}

// parseResponse decodes a Get response body, as the client would without
// the fast path (getAnswer). The value aliases what proto.Unmarshal
// allocated; the envelope is reset for the next call, as release does.
func (p *plainGetCodec) parseResponse(body []byte) (uint64, GetResponse, bool) {
	if err := unmarshalEnvelope(body, &p.env); err != nil {
		return 0, GetResponse{}, false
	}
	b, ok := p.env.Body.(*wirepb.Envelope_GetResponse)
	if !ok || p.env.ErrorCode != wirepb.Code_CODE_OK {
		return 0, GetResponse{}, false
	}
	id, resp := p.env.Id, decodeGetResponse(b.GetResponse)
	proto.Reset(&p.env)
	return id, resp, true
}

// benchGetRequest and benchGetResponse are the messages of the cluster
// benchmarks' remote hit: a short group and key, a 1 KiB value.
var (
	benchGetRequest  = GetRequest{Group: "g", Key: "user:00000042"}
	benchGetResponse = GetResponse{Value: Value{Value: bytes.Repeat([]byte("v"), 1024), TTL: time.Minute, Age: time.Second}}
	benchTaggedResp  = GetResponse{Value: Value{Value: bytes.Repeat([]byte("v"), 1024), TTL: time.Minute, Age: time.Second, Tags: []string{"org:7", "user:42"}}}
)

// BenchmarkGetCodec measures each of the four steps of a Get on the wire,
// with the fast path (impl=fast) and the plain one (impl=plain).
func BenchmarkGetCodec(b *testing.B) {
	skipWithoutFastGet(b)
	const id, timeout = 1 << 20, int64(time.Second)
	reqFrame := appendGetRequestFrame(nil, id, timeout, benchGetRequest)
	respFrames := map[string][]byte{
		"1KiB":      appendGetResponseFrame(nil, id, benchGetResponse),
		"1KiB-tags": appendGetResponseFrame(nil, id, benchTaggedResp),
	}
	resps := map[string]GetResponse{"1KiB": benchGetResponse, "1KiB-tags": benchTaggedResp}

	b.Run("step=encode-request/impl=fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendGetRequestFrame(buf, id, timeout, benchGetRequest)
		}
	})
	b.Run("step=encode-request/impl=plain", func(b *testing.B) {
		b.ReportAllocs()
		p := newPlainGetCodec()
		var buf []byte
		for b.Loop() {
			buf = p.requestFrame(buf, id, timeout, benchGetRequest)
		}
	})
	b.Run("step=decode-request/impl=fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, req, ok := fastGetRequest(reqFrame[frameHeaderLen:]); !ok || req.Key != benchGetRequest.Key {
				b.Fatal("fastGetRequest failed")
			}
		}
	})
	b.Run("step=decode-request/impl=plain", func(b *testing.B) {
		b.ReportAllocs()
		p := newPlainGetCodec()
		for b.Loop() {
			if _, req, ok := p.parseRequest(reqFrame[frameHeaderLen:]); !ok || req.Key != benchGetRequest.Key {
				b.Fatal("plain decode failed")
			}
		}
	})
	for _, value := range []string{"1KiB", "1KiB-tags"} {
		resp, frame := resps[value], respFrames[value]
		b.Run("step=encode-response/value="+value+"/impl=fast", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = appendGetResponseFrame(buf, id, resp)
			}
		})
		b.Run("step=encode-response/value="+value+"/impl=plain", func(b *testing.B) {
			b.ReportAllocs()
			p := newPlainGetCodec()
			var buf []byte
			for b.Loop() {
				buf = p.responseFrame(buf, id, resp)
			}
		})
		b.Run("step=decode-response/value="+value+"/impl=fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, got, ok := fastGetResponse(frame[frameHeaderLen:]); !ok || len(got.Value.Value) != 1024 {
					b.Fatal("fastGetResponse failed")
				}
			}
		})
		b.Run("step=decode-response/value="+value+"/impl=plain", func(b *testing.B) {
			b.ReportAllocs()
			p := newPlainGetCodec()
			for b.Loop() {
				if _, got, ok := p.parseResponse(frame[frameHeaderLen:]); !ok || len(got.Value.Value) != 1024 {
					b.Fatal("plain decode failed")
				}
			}
		})
	}
}

// TestPlainGetCodecMatchesFast checks that the benchmark's plain path does
// the same job as the fast path: the same bytes, the same results.
func TestPlainGetCodecMatchesFast(t *testing.T) {
	skipWithoutFastGet(t)
	p := newPlainGetCodec()
	const id, timeout = 99, int64(time.Second)
	fastReq := appendGetRequestFrame(nil, id, timeout, benchGetRequest)
	if plain := p.requestFrame(nil, id, timeout, benchGetRequest); !bytes.Equal(plain, fastReq) {
		t.Errorf("plain request frame = %x, fast %x", plain, fastReq)
	}
	if gotID, req, ok := p.parseRequest(fastReq[frameHeaderLen:]); !ok || gotID != id || req.Group != benchGetRequest.Group || req.Key != benchGetRequest.Key {
		t.Errorf("plain parseRequest = %d, %+v, %v; want %d, %+v", gotID, req, ok, id, benchGetRequest)
	}
	for _, resp := range []GetResponse{benchGetResponse, benchTaggedResp} {
		fastResp := appendGetResponseFrame(nil, id, resp)
		if plain := p.responseFrame(nil, id, resp); !bytes.Equal(plain, fastResp) {
			t.Errorf("plain response frame = %x, fast %x", plain, fastResp)
		}
		_, want, _ := fastGetResponse(fastResp[frameHeaderLen:])
		gotID, got, ok := p.parseResponse(fastResp[frameHeaderLen:])
		if !ok || gotID != id || !bytes.Equal(got.Value.Value, want.Value.Value) || got.TTL != want.TTL || got.Age != want.Age || len(got.Tags) != len(want.Tags) {
			t.Errorf("plain parseResponse = %d, %+v, %v; want %d, %+v", gotID, got, ok, id, want)
		}
	}
}
