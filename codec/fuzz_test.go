package codec

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

// The fuzz targets check the Unmarshal side of each codec on arbitrary bytes:
// it never panics, every failure wraps ErrDecode and returns the zero value,
// and anything it accepts encodes again and decodes to the same encoding (a
// decoded value is a fixed point of Marshal∘Unmarshal). Seed corpora live in
// testdata/fuzz/<FuzzName>/; run one with, for example,
//
//	go test -run=^$ -fuzz=FuzzGob -fuzztime=30s ./codec/

// checkReencode asserts the fuzz contract for one codec and input.
func checkReencode[V any](t *testing.T, c Codec[V], data []byte, isZero func(V) bool) {
	v, err := c.Unmarshal(data)
	if err != nil {
		if !errors.Is(err, ErrDecode) {
			t.Fatalf("Unmarshal(%q) error = %v, want one wrapping ErrDecode", data, err)
		}
		if !isZero(v) {
			t.Fatalf("Unmarshal(%q) returned %#v with error %v, want the zero value", data, v, err)
		}
		return
	}
	b1, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(Unmarshal(%q)) error: %v", data, err)
	}
	v2, err := c.Unmarshal(b1)
	if err != nil {
		t.Fatalf("Unmarshal(%q) (re-encoded from %q) error: %v", b1, data, err)
	}
	b2, err := c.Marshal(v2)
	if err != nil {
		t.Fatalf("Marshal of second decode error: %v", err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("re-encoding is not stable for input %q:\n first  %q\n second %q", data, b1, b2)
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"Name":"ann","Age":1,"Tags":["a"],"Boss":{"Name":"bob"}}`))
	c := JSON[user]()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReencode(t, c, data, func(u user) bool { return u.Name == "" && u.Tags == nil && u.Boss == nil && u.Raw == nil })
	})
}

func FuzzGob(f *testing.F) {
	if b, err := Gob[user]().Marshal(user{Name: "ann", Tags: []string{"a"}, Boss: &user{Age: 3}}); err == nil {
		f.Add(b)
	}
	c := Gob[user]()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReencode(t, c, data, func(u user) bool { return u.Name == "" && u.Tags == nil && u.Boss == nil && u.Raw == nil })
	})
}

func FuzzProto(f *testing.F) {
	if b, err := Proto[*structpb.Struct]().Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{
		"a": structpb.NewStringValue("b"), "n": structpb.NewNumberValue(1.5),
	}}); err == nil {
		f.Add(b)
	}
	c := Proto[*structpb.Struct]()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReencode(t, c, data, func(m *structpb.Struct) bool { return m == nil })
	})
}
