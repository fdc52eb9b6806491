package meshcache

import (
	"fmt"
	"strconv"
	"strings"
)

// Key builds a stable key from parts, for keys made of several arguments. Parts are joined with ':' after escaping '\' and
// ':' in each, so different parts never give the same key:
// Key("a:b", "c") is `a\:b:c` and Key("a", "b:c") is `a:b\:c`.
//
// Strings and byte slices are used as they are, integers, floats and bools
// in their strconv form, [fmt.Stringer]s by their String method, and other
// values as fmt.Sprint formats them. Parts of different types with the same
// text give the same key: Key(1) == Key("1").
func Key(parts ...any) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(':')
		}
		s := keyPart(p)
		for j := 0; j < len(s); j++ {
			if c := s[j]; c == ':' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
	}
	return b.String()
}

func keyPart(p any) string {
	switch v := p.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}
