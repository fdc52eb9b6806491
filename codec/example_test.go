package codec_test

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/meshcache/meshcache/codec"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type User struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func ExampleJSON() {
	c := codec.JSON[User]()
	b, err := c.Marshal(User{ID: 42, Name: "Ann"})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))

	u, err := c.Unmarshal(b)
	fmt.Println(u.Name, err)

	_, err = c.Unmarshal([]byte("{oops"))
	fmt.Println(errors.Is(err, codec.ErrDecode))
	// Output:
	// {"id":42,"name":"Ann"}
	// Ann <nil>
	// true
}

func ExampleGob() {
	c := codec.Gob[User]()
	b, err := c.Marshal(User{ID: 7, Name: "Bob"})
	if err != nil {
		panic(err)
	}
	u, err := c.Unmarshal(b)
	fmt.Println(u.ID, u.Name, err)
	// Output: 7 Bob <nil>
}

func ExampleProto() {
	// M is the generated pointer type; here a well-known type.
	c := codec.Proto[*wrapperspb.StringValue]()
	b, err := c.Marshal(wrapperspb.String("hello"))
	if err != nil {
		panic(err)
	}
	m, err := c.Unmarshal(b)
	fmt.Println(m.GetValue(), err)
	// Output: hello <nil>
}

func ExampleBytes() {
	c := codec.Bytes()
	data := []byte("raw")
	v, _ := c.Unmarshal(data)
	data[0] = 'R' // v aliases data
	fmt.Println(string(v))
	// Output: Raw
}

func ExampleString() {
	c := codec.String()
	b, _ := c.Marshal("héllo")
	s, _ := c.Unmarshal(b)
	fmt.Println(len(b), s)
	// Output: 6 héllo
}

func ExampleFuncs() {
	// A user codec for int, written as two functions.
	c := codec.Funcs[int]{
		MarshalFunc: func(v int) ([]byte, error) { return strconv.AppendInt(nil, int64(v), 10), nil },
		UnmarshalFunc: func(b []byte) (int, error) {
			return strconv.Atoi(string(b))
		},
	}
	b, _ := c.Marshal(1234)
	v, err := c.Unmarshal(b)
	fmt.Println(string(b), v, err)

	_, err = c.Unmarshal([]byte("x"))
	fmt.Println(errors.Is(err, codec.ErrDecode), err)
	// Output:
	// 1234 1234 <nil>
	// true codec: decode: funcs: strconv.Atoi: parsing "x": invalid syntax
}
