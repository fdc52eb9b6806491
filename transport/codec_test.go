package transport

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

func TestFrameReader(t *testing.T) {
	frame := func(body string) string { return string(header(uint32(len(body)))) + body }
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr error
	}{
		{name: "empty input", in: "", wantErr: io.EOF},
		{name: "two frames", in: frame("ab") + frame("cde"), want: []string{"ab", "cde"}, wantErr: io.EOF},
		{name: "at limit", in: frame("abcd"), max: 4, want: []string{"abcd"}, wantErr: io.EOF},
		{name: "over limit", in: frame("abcde"), max: 4, wantErr: ErrFrameTooLarge},
		{name: "1 GiB claim", in: string(header(1 << 30)), wantErr: ErrFrameTooLarge},
		{name: "zero length", in: string(header(0)), wantErr: ErrMalformed},
		{name: "short header", in: "\x00\x00\x01", wantErr: ErrMalformed},
		{name: "short body", in: string(header(10)) + "abc", wantErr: ErrMalformed},
		{name: "big claim short body", in: string(header(8<<20)) + "abc", max: 16 << 20, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := newFrameReader(strings.NewReader(tt.in), 16, cmp.Or(tt.max, DefaultMaxFrameBytes))
			var got []string
			var err error
			for range 10 {
				var b []byte
				if b, err = fr.next(); err != nil {
					break
				}
				got = append(got, string(b))
			}
			if !reflect.DeepEqual(got, tt.want) || !errors.Is(err, tt.wantErr) {
				t.Errorf("frames = %q, %v, want %q, %v", got, err, tt.want, tt.wantErr)
			}
			if cap(fr.buf) > 1<<20 {
				t.Errorf("reader buffer grew to %d bytes", cap(fr.buf))
			}
		})
	}
}

func TestLargeFrameGrowsIncrementally(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 3<<20+17)
	in := append(header(uint32(len(body))), body...)
	fr := newFrameReader(bytes.NewReader(in), 4096, DefaultMaxFrameBytes)
	got, err := fr.next()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("next() = %d bytes, %v, want the %d-byte body", len(got), err, len(body))
	}
	if _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Errorf("next() after last frame error = %v, want io.EOF", err)
	}
	if fr.buf != nil {
		t.Errorf("reader kept a %d-byte buffer after a large frame", cap(fr.buf))
	}
}

func TestEnvelopeID(t *testing.T) {
	full, err := proto.Marshal(&wirepb.Envelope{Id: 77, TimeoutNanos: 5, ErrorMessage: []byte("x"),
		Body: &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{Value: []byte("v"), Tags: [][]byte{[]byte("t")}}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		want    uint64
		wantErr bool
	}{
		{name: "full envelope", in: full, want: 77},
		{name: "empty", in: nil, wantErr: true},
		{name: "id zero", in: []byte{0x08, 0x00}, wantErr: true},
		{name: "truncated varint", in: []byte{0x08, 0x80}, wantErr: true},
		{name: "bad tag", in: []byte{0x00}, wantErr: true},
		{name: "truncated bytes", in: []byte{0x08, 0x01, 0x22, 0x05, 'a'}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := envelopeID(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("envelopeID(%x) = %d, %v, want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("envelopeID(%x) error = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

func TestWriteGossipRoundTrip(t *testing.T) {
	reqs := []WriteRequest{
		{Group: "g", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"a", "\xff"}, Origin: "n1", ID: 1 << 60},
		{Group: "g", Op: OpInvalidateTags, Tags: []string{"org:acme"}},
		{Group: "g", Op: OpSet, Phase: PhaseCopies, Items: []SetItem{{Key: "k", Value: []byte("v"), TTL: time.Second, Tags: []string{"t"}}}},
		{Group: "g", Op: OpExpire, Keys: []string{"k"}, TTL: -time.Second},
		{Op: OpClear},
	}
	for _, req := range reqs {
		t.Run(req.Op.String(), func(t *testing.T) {
			b, err := EncodeWrite(req)
			if err != nil {
				t.Fatalf("EncodeWrite(%+v) error = %v", req, err)
			}
			got, err := DecodeWrite(b)
			if err != nil || !reflect.DeepEqual(got, req) {
				t.Errorf("DecodeWrite(EncodeWrite(%+v)) = %+v, %v", req, got, err)
			}
		})
	}
}

func TestDecodeWriteErrors(t *testing.T) {
	valid, err := EncodeWrite(WriteRequest{Group: "g", Op: OpClear})
	if err != nil {
		t.Fatal(err)
	}
	wrongVersion := bytes.Clone(valid)
	wrongVersion[2] = ProtocolVersion + 1
	badOp := append([]byte{'m', 'w', ProtocolVersion}, protoBytes(t, &wirepb.WriteRequest{Op: 42})...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{name: "empty", in: nil, want: ErrMalformed},
		{name: "no magic", in: []byte("xx\x01"), want: ErrMalformed},
		{name: "wrong version", in: wrongVersion, want: ErrWrongProtocol},
		{name: "corrupt body", in: append(bytes.Clone(valid[:3]), 0xff, 0xff), want: ErrMalformed},
		{name: "undefined op", in: badOp, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeWrite(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("DecodeWrite(%q) error = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
	if _, err := EncodeWrite(WriteRequest{Op: 0}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("EncodeWrite(op 0) error = %v, want ErrBadRequest", err)
	}
}

func protoBytes(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, sentinel := range []error{ErrNotFound, ErrLoader, ErrOverloaded, ErrWrongProtocol, ErrUnknownGroup, ErrBadRequest, ErrUnavailable} {
		err := errorOf(codeOf(sentinel), []byte(sentinel.Error()))
		if !errors.Is(err, sentinel) || err.Error() != sentinel.Error() {
			t.Errorf("errorOf(codeOf(%v)) = %v, want the same sentinel", sentinel, err)
		}
	}
	if err := errorOf(wirepb.Code(1234), []byte("future")); !errors.Is(err, ErrLoader) {
		t.Errorf("errorOf(unknown code) = %v, want ErrLoader", err)
	}
	if err := errorOf(wirepb.Code_CODE_OK, nil); err != nil {
		t.Errorf("errorOf(OK) = %v, want nil", err)
	}
}

func TestOpPhaseStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{OpInvalidate.String(), "invalidate"}, {OpInvalidateTags.String(), "invalidate-tags"},
		{OpClear.String(), "clear"}, {OpSet.String(), "set"}, {OpSetIfAbsent.String(), "set-if-absent"},
		{OpExpire.String(), "expire"}, {Op(0).String(), "Op(0)"},
		{Phase(0).String(), "unspecified"}, {PhaseServing.String(), "serving"},
		{PhaseCopies.String(), "copies"}, {Phase(9).String(), "Phase(9)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}
