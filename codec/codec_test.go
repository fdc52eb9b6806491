package codec

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// user is the struct the tests and fuzz targets encode. It has no maps so that
// gob encodings of equal values are equal bytes.
type user struct {
	Name  string
	Age   int64
	Score float64
	Tags  []string
	Boss  *user
	Raw   []byte
	Inner struct{ X uint8 }
}

// shape is registered with gob so that it can travel inside an interface.
type shape struct{ Sides int }

func init() {
	gob.Register(shape{})
}

// roundTrip marshals v with c, unmarshals the result and reports a mismatch
// according to eq.
func roundTrip[V any](t *testing.T, c Codec[V], v V, eq func(a, b V) bool) {
	t.Helper()
	b, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%#v) error: %v", v, err)
	}
	got, err := c.Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal(Marshal(%#v)) error: %v", v, err)
	}
	if !eq(got, v) {
		t.Errorf("Unmarshal(Marshal(%#v)) = %#v, want the original", v, got)
	}
}

func deepEqual[V any](a, b V) bool { return reflect.DeepEqual(a, b) }

func protoEqual[M proto.Message](a, b M) bool { return proto.Equal(a, b) }

func TestBytes(t *testing.T) {
	c := Bytes()
	for _, tt := range []struct {
		name string
		v    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"binary", []byte{0, 1, 0xff, 'a'}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			roundTrip(t, c, tt.v, deepEqual[[]byte])
		})
	}
	t.Run("aliases", func(t *testing.T) {
		data := []byte("abc")
		got, err := c.Unmarshal(data)
		if err != nil {
			t.Fatalf("Unmarshal error: %v", err)
		}
		data[0] = 'x'
		if string(got) != "xbc" {
			t.Errorf("Unmarshal result = %q after changing data, want %q (documented aliasing)", got, "xbc")
		}
	})
}

func TestString(t *testing.T) {
	c := String()
	for _, tt := range []struct {
		name string
		v    string
	}{
		{"empty", ""},
		{"ascii", "hello"},
		{"utf8", "héllo, 世界"},
		{"invalid utf8 and NUL", "\xff\x00\xfe"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			roundTrip(t, c, tt.v, func(a, b string) bool { return a == b })
		})
	}
	t.Run("copies", func(t *testing.T) {
		data := []byte("abc")
		got, _ := c.Unmarshal(data)
		data[0] = 'x'
		if got != "abc" {
			t.Errorf("Unmarshal result = %q after changing data, want %q", got, "abc")
		}
	})
}

func TestJSON(t *testing.T) {
	t.Run("struct", func(t *testing.T) {
		u := user{Name: "ann", Age: 42, Score: 0.5, Tags: []string{"a", "b"}, Boss: &user{Name: "bob"}, Raw: []byte{1, 2}}
		u.Inner.X = 7
		roundTrip(t, JSON[user](), u, deepEqual[user])
	})
	t.Run("pointer", func(t *testing.T) {
		roundTrip(t, JSON[*user](), &user{Name: "ann"}, deepEqual[*user])
	})
	t.Run("map", func(t *testing.T) {
		roundTrip(t, JSON[map[string]int](), map[string]int{"a": 1, "b": 2}, deepEqual[map[string]int])
	})
	t.Run("int", func(t *testing.T) {
		roundTrip(t, JSON[int](), -12345, deepEqual[int])
	})
	t.Run("null is zero", func(t *testing.T) {
		got, err := JSON[*user]().Unmarshal([]byte("null"))
		if err != nil || got != nil {
			t.Errorf("Unmarshal(null) = %v, %v, want nil, nil", got, err)
		}
	})
	t.Run("syntax error is reachable", func(t *testing.T) {
		_, err := JSON[user]().Unmarshal([]byte("{"))
		var se *json.SyntaxError
		if !errors.Is(err, ErrDecode) || !errors.As(err, &se) {
			t.Errorf("Unmarshal(%q) error = %v, want ErrDecode wrapping *json.SyntaxError", "{", err)
		}
	})
	t.Run("encode errors", func(t *testing.T) {
		if _, err := JSON[float64]().Marshal(math.Inf(1)); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(+Inf) error = %v, want ErrEncode", err)
		}
		if _, err := JSON[chan int]().Marshal(make(chan int)); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(chan) error = %v, want ErrEncode", err)
		}
	})
}

func TestGob(t *testing.T) {
	t.Run("struct", func(t *testing.T) {
		u := user{Name: "ann", Age: 42, Score: 0.5, Tags: []string{"a", "b"}, Boss: &user{Name: "bob"}, Raw: []byte{1, 2}}
		u.Inner.X = 7
		roundTrip(t, Gob[user](), u, deepEqual[user])
	})
	t.Run("pointer", func(t *testing.T) {
		roundTrip(t, Gob[*user](), &user{Name: "ann", Age: 1}, deepEqual[*user])
	})
	t.Run("map", func(t *testing.T) {
		roundTrip(t, Gob[map[string]int](), map[string]int{"a": 1, "b": 2}, deepEqual[map[string]int])
	})
	t.Run("zero int", func(t *testing.T) {
		roundTrip(t, Gob[int](), 0, deepEqual[int])
	})
	t.Run("string", func(t *testing.T) {
		roundTrip(t, Gob[string](), "héllo", deepEqual[string])
	})
	t.Run("interface", func(t *testing.T) {
		roundTrip(t, Gob[any](), any(shape{Sides: 3}), deepEqual[any])
	})
	t.Run("nil interface", func(t *testing.T) {
		roundTrip(t, Gob[any](), nil, deepEqual[any])
	})
	t.Run("self-describing", func(t *testing.T) {
		// Two values encoded separately decode separately: each carries its
		// own type definitions.
		c := Gob[user]()
		a, _ := c.Marshal(user{Name: "a"})
		b, _ := c.Marshal(user{Name: "b"})
		if got, err := c.Unmarshal(b); err != nil || got.Name != "b" {
			t.Errorf("Unmarshal(second) = %+v, %v, want Name b", got, err)
		}
		if got, err := c.Unmarshal(a); err != nil || got.Name != "a" {
			t.Errorf("Unmarshal(first) = %+v, %v, want Name a", got, err)
		}
	})
	t.Run("encode errors", func(t *testing.T) {
		if _, err := Gob[*user]().Marshal(nil); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(nil *user) error = %v, want ErrEncode", err)
		}
		if _, err := Gob[chan int]().Marshal(make(chan int)); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(chan) error = %v, want ErrEncode", err)
		}
		type unregistered struct{ A int }
		if _, err := Gob[any]().Marshal(unregistered{1}); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(unregistered type in interface) error = %v, want ErrEncode", err)
		}
	})
	t.Run("trailing data", func(t *testing.T) {
		b, _ := Gob[int]().Marshal(5)
		if _, err := Gob[int]().Unmarshal(append(b, 0)); !errors.Is(err, ErrDecode) {
			t.Errorf("Unmarshal(valid + trailing byte) error = %v, want ErrDecode", err)
		}
	})
	t.Run("type mismatch", func(t *testing.T) {
		b, _ := Gob[user]().Marshal(user{Name: "a"})
		if _, err := Gob[int]().Unmarshal(b); !errors.Is(err, ErrDecode) {
			t.Errorf("Unmarshal(user) into int error = %v, want ErrDecode", err)
		}
	})
}

func TestProto(t *testing.T) {
	t.Run("StringValue", func(t *testing.T) {
		roundTrip(t, Proto[*wrapperspb.StringValue](), wrapperspb.String("héllo"), protoEqual[*wrapperspb.StringValue])
	})
	t.Run("Struct", func(t *testing.T) {
		s, err := structpb.NewStruct(map[string]any{
			"name": "ann", "age": 42.0, "ok": true, "tags": []any{"a", "b"},
			"boss": map[string]any{"name": "bob"}, "none": nil,
		})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, Proto[*structpb.Struct](), s, protoEqual[*structpb.Struct])
	})
	t.Run("empty message", func(t *testing.T) {
		roundTrip(t, Proto[*wrapperspb.StringValue](), &wrapperspb.StringValue{}, protoEqual[*wrapperspb.StringValue])
	})
	t.Run("nil message encodes as empty", func(t *testing.T) {
		c := Proto[*wrapperspb.StringValue]()
		b, err := c.Marshal(nil)
		if err != nil || len(b) != 0 {
			t.Fatalf("Marshal(nil) = %x, %v, want empty, nil", b, err)
		}
		got, err := c.Unmarshal(b)
		if err != nil || got == nil || got.GetValue() != "" {
			t.Errorf("Unmarshal(empty) = %v, %v, want a new empty message", got, err)
		}
	})
	t.Run("deterministic", func(t *testing.T) {
		m := map[string]any{}
		for i := range 50 {
			m[fmt.Sprint("k", i)] = float64(i)
		}
		s, _ := structpb.NewStruct(m)
		c := Proto[*structpb.Struct]()
		want, _ := c.Marshal(s)
		for range 20 {
			if got, _ := c.Marshal(s); !bytes.Equal(got, want) {
				t.Fatalf("Marshal(same Struct) gave different bytes")
			}
		}
	})
	t.Run("result is fresh", func(t *testing.T) {
		c := Proto[*wrapperspb.StringValue]()
		b, _ := c.Marshal(wrapperspb.String("x"))
		m1, _ := c.Unmarshal(b)
		m2, _ := c.Unmarshal(b)
		if m1 == m2 {
			t.Errorf("two Unmarshal calls returned the same message %p", m1)
		}
	})
	t.Run("invalid utf8 is ErrEncode", func(t *testing.T) {
		if _, err := Proto[*wrapperspb.StringValue]().Marshal(wrapperspb.String("\xff")); !errors.Is(err, ErrEncode) {
			t.Errorf("Marshal(invalid UTF-8) error = %v, want ErrEncode", err)
		}
	})
	t.Run("interface type parameter", func(t *testing.T) {
		c := Proto[proto.Message]()
		b, err := c.Marshal(wrapperspb.String("x"))
		if err != nil {
			t.Fatalf("Marshal error: %v", err)
		}
		if _, err := c.Unmarshal(b); !errors.Is(err, ErrDecode) {
			t.Errorf("Unmarshal with M = proto.Message error = %v, want ErrDecode", err)
		}
	})
	t.Run("dynamicpb", func(t *testing.T) {
		if _, err := Proto[*dynamicpb.Message]().Unmarshal(nil); !errors.Is(err, ErrDecode) {
			t.Errorf("Unmarshal with M = *dynamicpb.Message error = %v, want ErrDecode", err)
		}
	})
}

// TestGarbage feeds malformed input to every decoding codec: each must return
// an error wrapping ErrDecode and the zero value, and never panic.
func TestGarbage(t *testing.T) {
	gobUser, _ := Gob[user]().Marshal(user{Name: "ann", Tags: []string{"a"}})
	protoStruct, _ := Proto[*structpb.Struct]().Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}})
	inputs := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"zero byte", []byte{0}},
		{"ff", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"text", []byte("not an encoding")},
		{"json open", []byte(`{"Name":`)},
		{"gob truncated", gobUser[:len(gobUser)-3]},
		{"gob huge count", []byte{0xf8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"proto truncated", protoStruct[:len(protoStruct)-1]},
		{"proto bad length", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"proto bad wire type", []byte{0x0f}},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			if v, err := JSON[user]().Unmarshal(in.data); !errors.Is(err, ErrDecode) || !reflect.DeepEqual(v, user{}) {
				t.Errorf("JSON Unmarshal(%q) = %+v, %v, want zero, ErrDecode", in.data, v, err)
			}
			if v, err := Gob[user]().Unmarshal(in.data); !errors.Is(err, ErrDecode) || !reflect.DeepEqual(v, user{}) {
				t.Errorf("Gob Unmarshal(%q) = %+v, %v, want zero, ErrDecode", in.data, v, err)
			}
			// Empty input is a valid (empty) protobuf message.
			if len(in.data) == 0 || in.name == "text" {
				return
			}
			if v, err := Proto[*structpb.Struct]().Unmarshal(in.data); !errors.Is(err, ErrDecode) || v != nil {
				t.Errorf("Proto Unmarshal(%q) = %v, %v, want nil, ErrDecode", in.data, v, err)
			}
		})
	}
}

func TestFuncs(t *testing.T) {
	errBad := errors.New("bad")
	c := Funcs[int]{
		MarshalFunc: func(v int) ([]byte, error) {
			if v < 0 {
				return nil, errBad
			}
			return []byte{byte(v)}, nil
		},
		UnmarshalFunc: func(b []byte) (int, error) {
			if len(b) != 1 {
				return 0, fmt.Errorf("%w: want 1 byte, got %d", ErrDecode, len(b))
			}
			return int(b[0]), nil
		},
	}
	var _ Codec[int] = c
	roundTrip[int](t, c, 7, deepEqual[int])

	_, err := c.Marshal(-1)
	if !errors.Is(err, ErrEncode) || !errors.Is(err, errBad) {
		t.Errorf("Marshal(-1) error = %v, want ErrEncode wrapping errBad", err)
	}
	_, err = c.Unmarshal(nil)
	if !errors.Is(err, ErrDecode) {
		t.Errorf("Unmarshal(nil) error = %v, want ErrDecode", err)
	}
	if want := "codec: decode: want 1 byte, got 0"; err.Error() != want {
		t.Errorf("Unmarshal(nil) error = %q, want %q (not wrapped twice)", err, want)
	}

	var empty Funcs[int]
	if _, err := empty.Marshal(1); !errors.Is(err, ErrEncode) {
		t.Errorf("zero Funcs Marshal error = %v, want ErrEncode", err)
	}
	if _, err := empty.Unmarshal([]byte{1}); !errors.Is(err, ErrDecode) {
		t.Errorf("zero Funcs Unmarshal error = %v, want ErrDecode", err)
	}
}

// TestConcurrent uses one instance of each codec from several goroutines; run
// it with -race.
func TestConcurrent(t *testing.T) {
	j, g, p := JSON[user](), Gob[user](), Proto[*wrapperspb.StringValue]()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for k := range 50 {
				u := user{Name: fmt.Sprint(i, "-", k)}
				for _, c := range []Codec[user]{j, g} {
					b, err := c.Marshal(u)
					if err != nil {
						t.Errorf("Marshal error: %v", err)
						return
					}
					if got, err := c.Unmarshal(b); err != nil || got.Name != u.Name {
						t.Errorf("Unmarshal = %+v, %v, want Name %q", got, err, u.Name)
						return
					}
				}
				b, _ := p.Marshal(wrapperspb.String(u.Name))
				if got, err := p.Unmarshal(b); err != nil || got.GetValue() != u.Name {
					t.Errorf("proto Unmarshal = %v, %v, want %q", got, err, u.Name)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkCodecs(b *testing.B) {
	u := user{Name: "ann", Age: 42, Tags: []string{"a", "b"}}
	b.Run("JSON", func(b *testing.B) { benchRoundTrip(b, JSON[user](), u) })
	b.Run("Gob", func(b *testing.B) { benchRoundTrip(b, Gob[user](), u) })
	b.Run("Proto", func(b *testing.B) { benchRoundTrip(b, Proto[*wrapperspb.StringValue](), wrapperspb.String("ann")) })
	b.Run("String", func(b *testing.B) { benchRoundTrip(b, String(), "ann") })
}

func benchRoundTrip[V any](b *testing.B, c Codec[V], v V) {
	b.ReportAllocs()
	for b.Loop() {
		data, err := c.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}
