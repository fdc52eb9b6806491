package transport

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// skipWithoutFastGet skips a test of the fast path in a build without it
// (the tag meshcache_plainget).
func skipWithoutFastGet(tb testing.TB) {
	if !fastGet {
		tb.Skip("built with meshcache_plainget: no Get fast path")
	}
}

func TestFastEncodersMatchProto(t *testing.T) {
	skipWithoutFastGet(t)
	reqs := []struct {
		id      uint64
		timeout int64
		req     GetRequest
	}{
		{1, 0, GetRequest{}},
		{1 << 40, int64(time.Second), GetRequest{Group: "users", Key: "42"}},
		{7, -5, GetRequest{Group: "", Key: "\xff\x00"}},
		{300, 1, GetRequest{Group: string(bytes.Repeat([]byte("g"), 200)), Key: string(bytes.Repeat([]byte("k"), 70000))}},
	}
	for _, tt := range reqs {
		var a arena
		m := &wirepb.GetRequest{}
		encodeGetRequest(&a, m, tt.req)
		want, err := marshalFrame(nil, &wirepb.Envelope{Id: tt.id, TimeoutNanos: tt.timeout, Body: &wirepb.Envelope_GetRequest{GetRequest: m}}, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendGetRequestFrame([]byte("junk"), tt.id, tt.timeout, tt.req); !bytes.Equal(got, want) {
			t.Errorf("appendGetRequestFrame(%d, %d, %.20q) = %x, want %x", tt.id, tt.timeout, tt.req, got, want)
		}
		id, timeout, req, ok := fastGetRequest(want[frameHeaderLen:])
		if !ok || id != tt.id || int64(timeout) != tt.timeout || !reflect.DeepEqual(req, tt.req) {
			t.Errorf("fastGetRequest(encoded %d) = %d, %d, %.20q, %v", tt.id, id, timeout, req, ok)
		}
	}

	resps := []struct {
		id   uint64
		resp GetResponse
	}{
		{1, GetResponse{}},
		{2, GetResponse{Value: Value{Value: []byte("v"), TTL: time.Minute, Age: -time.Second, Tags: []string{"a", "", "\xff"}}}},
		{3, GetResponse{Value: Value{Value: bytes.Repeat([]byte("x"), 1<<17)}}},
	}
	for _, tt := range resps {
		var a arena
		m := &wirepb.GetResponse{}
		encodeGetResponse(&a, m, tt.resp)
		want, err := marshalFrame(nil, &wirepb.Envelope{Id: tt.id, Body: &wirepb.Envelope_GetResponse{GetResponse: m}}, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendGetResponseFrame(nil, tt.id, tt.resp); !bytes.Equal(got, want) {
			t.Errorf("appendGetResponseFrame(%d) = %x, want %x", tt.id, got, want)
		}
		id, resp, ok := fastGetResponse(want[frameHeaderLen:])
		if !ok || id != tt.id || !reflect.DeepEqual(resp, tt.resp) {
			t.Errorf("fastGetResponse(encoded %d) = %d, %+v, %v, want %+v", tt.id, id, resp, ok, tt.resp)
		}
	}
}

func TestFastParsersDeferToGenericPath(t *testing.T) {
	tests := []struct {
		name string
		env  *wirepb.Envelope
	}{
		{name: "error response", env: &wirepb.Envelope{Id: 1, ErrorCode: wirepb.Code_CODE_NOT_FOUND}},
		{name: "no body", env: &wirepb.Envelope{Id: 1}},
		{name: "no id", env: &wirepb.Envelope{Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{}}}},
		{name: "peek request", env: &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_PeekRequest{PeekRequest: &wirepb.PeekRequest{}}}},
		{name: "write response", env: &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{}}}},
		{name: "lease response", env: &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_LeaseResponse{LeaseResponse: &wirepb.LeaseResponse{}}}},
		{name: "ping", env: &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_Ping{Ping: &wirepb.Ping{}}}},
		{name: "pong", env: &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_Pong{Pong: &wirepb.Pong{}}}},
	}
	// A later body replaces an earlier one: a Get followed by another body
	// is that other body, whatever its field number.
	get := protoBytes(t, &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Key: []byte("k")}}})
	getResp := protoBytes(t, &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{Value: []byte("v")}}})
	for _, tail := range []struct {
		name string
		body []byte
	}{
		{"lease request", []byte{0x92, 0x01, 0x00}}, // field 18, empty
		{"ping", []byte{0xa2, 0x01, 0x00}},          // field 20, empty
		{"future body", []byte{0xb2, 0x01, 0x00}},   // field 22, empty
	} {
		t.Run("get then "+tail.name, func(t *testing.T) {
			if _, _, _, ok := fastGetRequest(append(append([]byte{}, get...), tail.body...)); ok {
				t.Errorf("fastGetRequest(get request then %s) ok, want deferral to the generic path", tail.name)
			}
			if _, _, ok := fastGetResponse(append(append([]byte{}, getResp...), tail.body...)); ok {
				t.Errorf("fastGetResponse(get response then %s) ok, want deferral to the generic path", tail.name)
			}
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := protoBytes(t, tt.env)
			if _, _, _, ok := fastGetRequest(b); ok {
				t.Errorf("fastGetRequest(%v) ok, want deferral to the generic path", tt.env)
			}
			if _, _, ok := fastGetResponse(b); ok {
				t.Errorf("fastGetResponse(%v) ok, want deferral to the generic path", tt.env)
			}
		})
	}
}
