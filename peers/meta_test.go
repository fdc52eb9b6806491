package peers

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []meta{
		{},
		{Protocol: protocolVersion, RPCAddr: "10.0.0.5:7947", Fingerprint: "ring:271/1.25 proto:1", Boot: 1<<63 + 5},
		{Protocol: protocolVersion, RPCAddr: "10.0.0.5:7947", Fingerprint: "fp", Boot: 9, Leaving: true},
		{Protocol: 1 << 40, RPCAddr: "[::1]:80", Fingerprint: strings.Repeat("x", 300), Boot: 0},
	}
	for _, want := range tests {
		got, err := decodeMeta(encodeMeta(want))
		if err != nil {
			t.Errorf("decodeMeta(encodeMeta(%+v)) error = %v", want, err)
			continue
		}
		if got != want {
			t.Errorf("decodeMeta(encodeMeta(%+v)) = %+v", want, got)
		}
	}
}

func TestMetaFitsMemberlistLimit(t *testing.T) {
	m := meta{Protocol: protocolVersion, RPCAddr: strings.Repeat("a", 200), Fingerprint: strings.Repeat("f", 280), Boot: ^uint64(0)}
	if n := len(encodeMeta(m)); n > memberlist.MetaMaxSize {
		t.Errorf("len(encodeMeta(480 bytes of strings)) = %d, want <= %d", n, memberlist.MetaMaxSize)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	valid := encodeMeta(meta{Protocol: 1, RPCAddr: "h:1", Fingerprint: "fp", Boot: 7})
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"format 0", append([]byte{0}, valid[1:]...)},
		{"only format", []byte{1}},
		{"bad varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"string too long", []byte{1, 1, 0x7f, 'a'}},
		{"huge string length", []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"boot truncated", valid[:len(valid)-2]},
		{"flags missing", valid[:len(valid)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := decodeMeta(tt.in); !errors.Is(err, errMeta) {
				t.Errorf("decodeMeta(%q) = %+v, %v, want errMeta", tt.in, m, err)
			}
		})
	}
}

func TestDecodeMetaForwardCompatible(t *testing.T) {
	want := meta{Protocol: 1, RPCAddr: "h:1", Fingerprint: "fp", Boot: 7, Leaving: true}
	b := encodeMeta(want)
	b[0] = metaFormat + 1 // a later format that appended a field
	b[len(b)-1] |= 0x80   // and a flag
	b = append(b, "new field"...)
	got, err := decodeMeta(b)
	if err != nil || got != want {
		t.Errorf("decodeMeta(format %d with trailer) = %+v, %v, want %+v, nil", metaFormat+1, got, err, want)
	}
}

// TestDecodeMetaFormat1 decodes the record of a node that predates the
// flags byte.
func TestDecodeMetaFormat1(t *testing.T) {
	want := meta{Protocol: 1, RPCAddr: "h:1", Fingerprint: "fp", Boot: 7}
	b := encodeMeta(want)
	b[0] = 1
	b = b[:len(b)-1]
	got, err := decodeMeta(b)
	if err != nil || got != want {
		t.Errorf("decodeMeta(format 1) = %+v, %v, want %+v, nil", got, err, want)
	}
}

func TestCheckMeta(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"same", encodeMeta(meta{Protocol: protocolVersion, Fingerprint: "fp"}), true},
		{"other fingerprint", encodeMeta(meta{Protocol: protocolVersion, Fingerprint: "fp2"}), false},
		{"other protocol", encodeMeta(meta{Protocol: protocolVersion + 1, Fingerprint: "fp"}), false},
		{"garbage", []byte("garbage"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkMeta("n", tt.raw, "fp")
			if tt.ok && err != nil {
				t.Errorf("checkMeta() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrIncompatible) {
				t.Errorf("checkMeta() = %v, want ErrIncompatible", err)
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(meta{Protocol: 1, RPCAddr: "127.0.0.1:7947", Fingerprint: "fp", Boot: 42}))
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, errMeta) {
				t.Fatalf("decodeMeta(%q) error %v does not wrap errMeta", b, err)
			}
			return
		}
		again, err := decodeMeta(encodeMeta(m))
		if err != nil || again != m {
			t.Fatalf("round trip of %+v = %+v, %v", m, again, err)
		}
	})
}
