package transport

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/internal/seedcorpus"
	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz")

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it must never
// panic, never return a frame over the limit or an empty one, and fail only
// with io.EOF, ErrFrameTooLarge or ErrMalformed. Read again in dribbles
// with a timeout after every one (as a reading caller's deadline cuts a
// frame), the same bytes must give the same frames and the same end.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range frameSeeds(f) {
		f.Add(seed)
	}
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), 16, limit)
		var frames [][]byte
		var end error
		for range len(data) + 1 { // each frame consumes at least 5 bytes
			body, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("next() error = %v, want EOF, ErrFrameTooLarge or ErrMalformed", err)
				}
				end = err
				break
			}
			if len(body) == 0 || len(body) > limit {
				t.Fatalf("next() returned %d bytes, want 1..%d", len(body), limit)
			}
			frames = append(frames, bytes.Clone(body))
			// Whatever a frame holds, decoding it must not panic.
			var env wirepb.Envelope
			_ = unmarshalEnvelope(body, &env)
		}
		if end == nil {
			t.Fatalf("reader returned more frames than the input can hold")
		}

		fr = newFrameReader(&dribbleReader{data: data}, 16, limit)
		got := 0
		for range 4*len(data) + 2 { // a timeout at most after each byte, then the end
			body, err := fr.next()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				if !sameEnd(err, end) {
					t.Fatalf("read in dribbles: next() error = %v after %d frames, want %v after %d", err, got, end, len(frames))
				}
				if got != len(frames) {
					t.Fatalf("read in dribbles: %d frames, want %d", got, len(frames))
				}
				return
			}
			if got >= len(frames) || !bytes.Equal(body, frames[got]) {
				t.Fatalf("read in dribbles: frame %d differs from the one read at once", got)
			}
			got++
		}
		t.Fatalf("read in dribbles: no end")
	})
}

// dribbleReader returns data one byte at a time, with a timeout error
// (os.ErrDeadlineExceeded) before each byte.
type dribbleReader struct {
	data    []byte
	timeout bool
}

func (r *dribbleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.timeout = !r.timeout; r.timeout {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p[:1], r.data)
	r.data = r.data[n:]
	return n, nil
}

// sameEnd reports whether two frame-reader errors are the same kind of end.
func sameEnd(a, b error) bool {
	for _, e := range []error{io.EOF, ErrFrameTooLarge, ErrMalformed} {
		if errors.Is(a, e) || errors.Is(b, e) {
			return errors.Is(a, e) && errors.Is(b, e)
		}
	}
	return false
}

// FuzzDecodeEnvelope decodes arbitrary frame bodies the way both sides do:
// errors must wrap ErrMalformed, the cheap id scan and the Get fast paths
// must agree with the full decode, and a decoded envelope must convert
// without panicking and survive a re-encode unchanged.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, seed := range envelopeSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reqID, reqTimeout, req, reqOK := fastGetRequest(data)
		respID, resp, respOK := fastGetResponse(data)
		var env wirepb.Envelope
		if err := unmarshalEnvelope(data, &env); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unmarshalEnvelope error = %v, want ErrMalformed", err)
			}
			if reqOK || respOK {
				t.Fatalf("fast path accepted input the generic decoder rejects (%v)", err)
			}
			return
		}
		if reqOK {
			b, ok := env.Body.(*wirepb.Envelope_GetRequest)
			if !ok || reqID != env.Id || int64(reqTimeout) != env.TimeoutNanos || !reflect.DeepEqual(decodeGetRequest(b.GetRequest), req) {
				t.Fatalf("fastGetRequest = %d, %v, %+v; generic decode = %v", reqID, reqTimeout, req, &env)
			}
		}
		if respOK {
			b, ok := env.Body.(*wirepb.Envelope_GetResponse)
			if !ok || respID != env.Id || env.ErrorCode != wirepb.Code_CODE_OK || !reflect.DeepEqual(decodeGetResponse(b.GetResponse), resp) {
				t.Fatalf("fastGetResponse = %d, %+v; generic decode = %v", respID, resp, &env)
			}
		}
		if id, err := envelopeID(data); err != nil || id != env.Id {
			t.Fatalf("envelopeID = %d, %v, want %d", id, err, env.Id)
		}
		convertEnvelope(&env)
		re, err := marshalFrame(nil, &env, 1<<30)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var again wirepb.Envelope
		if err := unmarshalEnvelope(re[frameHeaderLen:], &again); err != nil {
			t.Fatalf("decode of re-encoded envelope: %v", err)
		}
		if !proto.Equal(&env, &again) {
			t.Fatalf("re-encoded envelope differs:\n%v\n%v", &env, &again)
		}
	})
}

// convertEnvelope runs the conversions a server (requests) or client
// (responses) applies to a decoded envelope.
func convertEnvelope(env *wirepb.Envelope) {
	_ = errorOf(env.ErrorCode, env.ErrorMessage)
	switch b := env.Body.(type) {
	case *wirepb.Envelope_GetRequest:
		decodeGetRequest(b.GetRequest)
	case *wirepb.Envelope_GetManyRequest:
		decodeGetManyRequest(b.GetManyRequest)
	case *wirepb.Envelope_PeekRequest:
		decodePeekRequest(b.PeekRequest)
	case *wirepb.Envelope_WriteRequest:
		decodeWriteRequest(b.WriteRequest)
	case *wirepb.Envelope_GetResponse:
		decodeGetResponse(b.GetResponse)
	case *wirepb.Envelope_GetManyResponse:
		decodeGetManyResponse(b.GetManyResponse)
	case *wirepb.Envelope_PeekResponse:
		decodePeekResponse(b.PeekResponse)
	case *wirepb.Envelope_WriteResponse:
		decodeWriteResponse(b.WriteResponse)
	case *wirepb.Envelope_WriteBatchRequest:
		decodeWriteBatch(b.WriteBatchRequest)
	case *wirepb.Envelope_WriteBatchResponse:
		decodeWriteResults(b.WriteBatchResponse, len(b.WriteBatchResponse.GetResults()))
	case *wirepb.Envelope_LeaseRequest:
		decodeLeaseRequest(b.LeaseRequest)
	case *wirepb.Envelope_HandOverRequest:
		decodeHandOverRequest(b.HandOverRequest)
	case *wirepb.Envelope_LeaseResponse:
		decodeLeaseResponse(b.LeaseResponse)
	case *wirepb.Envelope_Ping, *wirepb.Envelope_Pong:
		// Nothing to convert: the envelope's id is all they carry.
	}
}

// FuzzDecodeWrite decodes arbitrary gossip payloads: errors must wrap
// ErrMalformed or ErrWrongProtocol, and a decoded write must encode and
// decode back to itself.
func FuzzDecodeWrite(f *testing.F) {
	for _, seed := range writeSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeWrite(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongProtocol) {
				t.Fatalf("DecodeWrite error = %v, want ErrMalformed or ErrWrongProtocol", err)
			}
			return
		}
		b, err := EncodeWrite(req)
		if err != nil {
			t.Fatalf("EncodeWrite(%+v) error = %v", req, err)
		}
		again, err := DecodeWrite(b)
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("DecodeWrite(EncodeWrite(%+v)) = %+v, %v", req, again, err)
		}
	})
}

func seedEnvelopes() []*wirepb.Envelope {
	tags := [][]byte{[]byte("org:acme"), []byte("\xff")}
	return []*wirepb.Envelope{
		{Id: 1, TimeoutNanos: int64(time.Second), Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Group: []byte("users"), Key: []byte("42")}}},
		{Id: 10, Trace: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Group: []byte("users"), Key: []byte("43")}}},
		{Id: 1, Body: &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{Value: bytes.Repeat([]byte("v"), 100), TtlNanos: int64(time.Minute), AgeNanos: 5, Tags: tags}}},
		{Id: 2, ErrorCode: wirepb.Code_CODE_NOT_FOUND, ErrorMessage: []byte("transport: not found")},
		{Id: 3, Body: &wirepb.Envelope_GetManyRequest{GetManyRequest: &wirepb.GetManyRequest{Group: []byte("g"), Keys: [][]byte{[]byte("a"), []byte("b")}}}},
		{Id: 3, Body: &wirepb.Envelope_GetManyResponse{GetManyResponse: &wirepb.GetManyResponse{Results: []*wirepb.KeyResult{
			{Key: []byte("a"), Value: []byte("va"), Tags: tags},
			{Key: []byte("b"), ErrorCode: wirepb.Code_CODE_LOADER, ErrorMessage: []byte("db down")},
		}}}},
		{Id: 4, Body: &wirepb.Envelope_PeekRequest{PeekRequest: &wirepb.PeekRequest{Group: []byte("g"), Key: []byte("k")}}},
		{Id: 4, Body: &wirepb.Envelope_PeekResponse{PeekResponse: &wirepb.PeekResponse{Found: true, Value: []byte("v")}}},
		{Id: 5, TimeoutNanos: 1, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{
			Group: []byte("g"), Op: wirepb.Op_OP_SET, Phase: wirepb.Phase_PHASE_SERVING,
			Items: []*wirepb.SetItem{{Key: []byte("k"), Value: []byte("v"), TtlNanos: 9, Tags: tags}}, Origin: []byte("node-1"), Id: 99,
		}}},
		{Id: 5, Body: &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{Applied: 3}}},
		{Id: 6, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{
			Group: []byte("g"), Op: wirepb.Op_OP_INVALIDATE, Phase: wirepb.Phase_PHASE_COPIES, Keys: [][]byte{[]byte("k")}, View: 1<<64 - 1,
		}}},
		{Id: 6, Body: &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{
			Members:     []*wirepb.Member{{Name: []byte("n1"), RpcAddr: []byte("127.0.0.1:7947"), Incarnation: 1 << 60}, {Name: []byte("\xff")}},
			SettleNanos: -5, SettleMember: []byte("n2"),
		}}},
		{Id: 8, Body: &wirepb.Envelope_HandOverRequest{HandOverRequest: &wirepb.HandOverRequest{
			Group: []byte("g"), From: []byte("n2"),
			Items: []*wirepb.SetItem{{Key: []byte("k"), Value: []byte("v"), TtlNanos: int64(time.Minute), Tags: [][]byte{[]byte("t")}}, {}},
		}}},
		{Id: 8, Body: &wirepb.Envelope_HandOverResponse{HandOverResponse: &wirepb.HandOverResponse{Stored: 1}}},
		{Id: 9, Body: &wirepb.Envelope_WriteBatchRequest{WriteBatchRequest: &wirepb.WriteBatchRequest{Writes: []*wirepb.WriteRequest{
			{Group: []byte("g"), Op: wirepb.Op_OP_INVALIDATE, Phase: wirepb.Phase_PHASE_SERVING, Keys: [][]byte{[]byte("a")}, Id: 1},
			{Group: []byte("g"), Op: wirepb.Op_OP_INVALIDATE_TAGS, Phase: wirepb.Phase_PHASE_COPIES, Tags: tags, Id: 2},
		}}}},
		{Id: 9, Body: &wirepb.Envelope_WriteBatchResponse{WriteBatchResponse: &wirepb.WriteBatchResponse{Results: []*wirepb.WriteResult{
			{Response: &wirepb.WriteResponse{Applied: 1}},
			{ErrorCode: wirepb.Code_CODE_UNKNOWN_GROUP, ErrorMessage: []byte("g")},
			{},
		}}}},
		{Id: 7, Body: &wirepb.Envelope_LeaseRequest{LeaseRequest: &wirepb.LeaseRequest{From: []byte("n1"), Incarnation: 9, Base: 3, Leaving: true}}},
		{Id: 7, Body: &wirepb.Envelope_LeaseResponse{LeaseResponse: &wirepb.LeaseResponse{
			Member: true, Leased: true, Base: 4, BaseNames: [][]byte{[]byte("n0"), []byte("n1")}, Incarnation: 10,
		}}},
		{Id: 8, Body: &wirepb.Envelope_Ping{Ping: &wirepb.Ping{}}},
		{Id: 8, Body: &wirepb.Envelope_Pong{Pong: &wirepb.Pong{}}},
		{Id: 11, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{
			Op: wirepb.Op_OP_INVALIDATE_TAGS, Phase: wirepb.Phase_PHASE_SERVING, Tags: tags, Origin: []byte("n1"), Id: 3, View: 8,
		}}},
		{Id: 11, Body: &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{L2Groups: [][]byte{[]byte("orders"), []byte("\xff")}}}},
		{Id: 12, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{
			Group: []byte("g"), Op: wirepb.Op_OP_INVALIDATE, Phase: wirepb.Phase_PHASE_SERVING, Keys: [][]byte{[]byte("k")}, CountHeld: true,
		}}},
	}
}

func envelopeSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, env := range seedEnvelopes() {
		seeds = append(seeds, protoBytes(tb, env))
	}
	return append(seeds, nil, []byte{0x08, 0x00}, []byte{0x5a, 0x02, 0xff, 0xff})
}

func frameSeeds(tb testing.TB) [][]byte {
	var all []byte
	var seeds [][]byte
	for _, body := range envelopeSeeds(tb)[:len(seedEnvelopes())] {
		frame := append(header(uint32(len(body))), body...)
		seeds = append(seeds, frame)
		all = append(all, frame...)
	}
	return append(seeds, all, header(1<<30), header(0), []byte{0, 0, 0}, append(header(10), "abc"...))
}

func writeSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, req := range []WriteRequest{
		{Group: "g", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"a", "b"}, Origin: "n1", ID: 7},
		{Group: "g", Op: OpInvalidateTags, Phase: PhaseCopies, Tags: []string{"org:acme"}},
		{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: []byte("v"), TTL: time.Minute, Tags: []string{"t"}}}},
		{Group: "g", Op: OpExpire, Keys: []string{"k"}, TTL: time.Second},
		{Group: "g", Op: OpClear},
		{Op: OpInvalidateTags, Tags: []string{"org:acme"}, Origin: "n1", ID: 9},
		{Group: "g", Op: OpInvalidate, Keys: []string{"k"}, CountHeld: true},
	} {
		b, err := EncodeWrite(req)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return append(seeds, nil, []byte("mw\x02"), []byte("mw\x01\xff"))
}

// TestSeedCorpus checks that testdata/fuzz holds a seed file for every seed
// (so plain `go test` runs them), and rewrites the files with
// -update-corpus after a wire change.
func TestSeedCorpus(t *testing.T) {
	for name, seeds := range map[string][][]byte{
		"FuzzReadFrame":      frameSeeds(t),
		"FuzzDecodeEnvelope": envelopeSeeds(t),
		"FuzzDecodeWrite":    writeSeeds(t),
	} {
		seedcorpus.Check(t, name, seeds, *updateCorpus, "go test -run TestSeedCorpus ./transport/ -update-corpus")
	}
}
