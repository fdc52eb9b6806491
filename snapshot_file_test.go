package meshcache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/meshcache/meshcache/internal/seedcorpus"
)

var updateSnapshotCorpus = flag.Bool("update-snapshot-corpus", false, "rewrite testdata/fuzz/FuzzDecodeSnapshot")

// sampleSnapshot returns a small snapshot that uses every field: several
// groups, an empty one, nil and empty values, tags shared between entries,
// expiries and hot copies. It is deterministic (it seeds the fuzz corpus).
func sampleSnapshot() []snapshotGroup {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	return []snapshotGroup{
		{Name: "users", Entries: []snapshotEntry{
			{Key: "42", Value: []byte("alice"), Tags: []string{"org:acme", "plan:pro"}, Expires: exp},
			{Key: "43", Value: []byte("bob"), Tags: []string{"org:acme"}, Expires: exp.Add(time.Nanosecond), Hot: true},
			{Key: "44", Value: nil},
			{Key: "45", Value: []byte{}, Tags: []string{}},
			{Key: strings.Repeat("k", MaxKeyLen), Value: []byte{0, 0xff, '\n'}, Tags: []string{strings.Repeat("t", MaxKeyLen)}},
		}},
		{Name: "empty"},
		{Name: "pages", Entries: []snapshotEntry{
			{Key: "/", Value: bytes.Repeat([]byte("<p>"), 100), Expires: time.Unix(0, 1), Hot: true},
			{Key: "/a", Value: []byte("a"), Expires: time.Unix(-1, 0)},
		}},
	}
}

// normalSnapshot returns groups as decodeSnapshot returns them (see the
// format's conversions).
func normalSnapshot(groups []snapshotGroup) []snapshotGroup {
	out := make([]snapshotGroup, len(groups))
	for i, g := range groups {
		out[i].Name = g.Name
		for _, e := range g.Entries {
			e.Value = append([]byte{}, e.Value...)
			if len(e.Tags) == 0 {
				e.Tags = nil
			}
			if n := snapshotExpiry(e.Expires); n != 0 {
				e.Expires = time.Unix(0, n)
			}
			out[i].Entries = append(out[i].Entries, e)
		}
	}
	return out
}

// diffSnapshot describes the first difference between got and want, or
// returns "". Values, tags and expiries must match exactly: nil against
// non-nil, and the instant (time.Time.Equal).
func diffSnapshot(got, want []snapshotGroup) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d groups, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name {
			return fmt.Sprintf("group %d named %q, want %q", i, g.Name, w.Name)
		}
		if len(g.Entries) != len(w.Entries) {
			return fmt.Sprintf("group %q: %d entries, want %d", w.Name, len(g.Entries), len(w.Entries))
		}
		for j := range w.Entries {
			ge, we := g.Entries[j], w.Entries[j]
			switch {
			case ge.Key != we.Key:
				return fmt.Sprintf("group %q entry %d: key %q, want %q", w.Name, j, ge.Key, we.Key)
			case !bytes.Equal(ge.Value, we.Value) || (ge.Value == nil) != (we.Value == nil):
				return fmt.Sprintf("group %q key %q: value %#v, want %#v", w.Name, we.Key, ge.Value, we.Value)
			case !slices.Equal(ge.Tags, we.Tags) || (ge.Tags == nil) != (we.Tags == nil):
				return fmt.Sprintf("group %q key %q: tags %#v, want %#v", w.Name, we.Key, ge.Tags, we.Tags)
			case !ge.Expires.Equal(we.Expires) || ge.Expires.IsZero() != we.Expires.IsZero():
				return fmt.Sprintf("group %q key %q: expires %v, want %v", w.Name, we.Key, ge.Expires, we.Expires)
			case ge.Hot != we.Hot:
				return fmt.Sprintf("group %q key %q: hot %v, want %v", w.Name, we.Key, ge.Hot, we.Hot)
			}
		}
	}
	return ""
}

func mustEncodeSnapshot(tb testing.TB, groups []snapshotGroup) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := encodeSnapshot(&buf, groups); err != nil {
		tb.Fatalf("encodeSnapshot: %v", err)
	}
	return buf.Bytes()
}

// resum returns a copy of b with its last 8 bytes replaced by the checksum
// of the others, so that a changed field reaches the parser's checks.
func resum(b []byte) []byte {
	if len(b) < snapshotSumLen {
		return slices.Clone(b)
	}
	body := b[:len(b)-snapshotSumLen]
	return binary.LittleEndian.AppendUint64(slices.Clone(body), xxhash.Sum64(body))
}

// wantBadSnapshot fails t unless decoding data fails with errBadSnapshot
// and no groups.
func wantBadSnapshot(t *testing.T, what string, data []byte, maxBytes int64) error {
	t.Helper()
	groups, err := decodeSnapshot(bytes.NewReader(data), maxBytes)
	if err == nil || !errors.Is(err, errBadSnapshot) || groups != nil {
		t.Fatalf("%s: decodeSnapshot = %d groups, %v; want nil, errBadSnapshot", what, len(groups), err)
	}
	return err
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	now := time.Now() // with a monotonic reading, which the file drops
	tests := []struct {
		name   string
		groups []snapshotGroup
	}{
		{"nil", nil},
		{"no groups", []snapshotGroup{}},
		{"empty group", []snapshotGroup{{Name: "g"}}},
		{"sample", sampleSnapshot()},
		{"now", []snapshotGroup{{Name: "g", Entries: []snapshotEntry{
			{Key: "a", Value: []byte("1"), Expires: now},
			{Key: "b", Value: []byte("2"), Expires: now.Add(time.Hour), Hot: true},
			{Key: "c", Value: []byte("3"), Expires: now.In(time.FixedZone("x", 3600))},
		}}}},
		{"large value", []snapshotGroup{{Name: "g", Entries: []snapshotEntry{
			{Key: "big", Value: bytes.Repeat([]byte("0123456789abcdef"), (3*snapshotChunk)/16+1)},
			{Key: "buffer-sized", Value: bytes.Repeat([]byte{7}, snapshotBufSize)},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := mustEncodeSnapshot(t, tt.groups)
			got, err := decodeSnapshot(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("decodeSnapshot: %v", err)
			}
			if d := diffSnapshot(got, normalSnapshot(tt.groups)); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestSnapshotFileExpiry checks the expiry field of each kind of time.
func TestSnapshotFileExpiry(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want int64 // field
	}{
		{"none", time.Time{}, 0},
		{"nanosecond", time.Unix(0, 1), 1},
		{"before the epoch", time.Unix(0, -5), -5},
		{"the epoch", time.Unix(0, 0), -1},
		{"2030", time.Date(2030, 1, 1, 0, 0, 0, 7, time.UTC), time.Date(2030, 1, 1, 0, 0, 0, 7, time.UTC).UnixNano()},
		{"last int64 nanosecond", time.Unix(0, math.MaxInt64), math.MaxInt64},
		{"year 3000", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
		{"year 1000", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), math.MinInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snapshotExpiry(tt.in); got != tt.want {
				t.Errorf("snapshotExpiry(%v) = %d, want %d", tt.in, got, tt.want)
			}
			in := []snapshotGroup{{Name: "g", Entries: []snapshotEntry{{Key: "k", Expires: tt.in}}}}
			got, err := decodeSnapshot(bytes.NewReader(mustEncodeSnapshot(t, in)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			exp := got[0].Entries[0].Expires
			if tt.want == 0 {
				if !exp.IsZero() {
					t.Errorf("decoded expiry %v, want zero", exp)
				}
			} else if !exp.Equal(time.Unix(0, tt.want)) {
				t.Errorf("decoded expiry %v, want %v", exp, time.Unix(0, tt.want))
			}
		})
	}
}

// TestSnapshotFileTruncated: every proper prefix of a valid file is refused.
func TestSnapshotFileTruncated(t *testing.T) {
	data := mustEncodeSnapshot(t, sampleSnapshot())
	for i := range len(data) {
		err := wantBadSnapshot(t, "prefix of "+strconv.Itoa(i)+" bytes", data[:i], int64(len(data)))
		if !strings.Contains(err.Error(), "truncated") {
			t.Errorf("prefix of %d bytes: error %q, want one saying truncated", i, err)
		}
	}
	// And a byte too many.
	wantBadSnapshot(t, "trailing byte", append(slices.Clone(data), 0), int64(len(data))+1)
}

// TestSnapshotFileBitFlip: a file with any one bit flipped is refused.
func TestSnapshotFileBitFlip(t *testing.T) {
	data := mustEncodeSnapshot(t, sampleSnapshot())
	bad := slices.Clone(data)
	for i := range bad {
		for bit := range 8 {
			bad[i] ^= 1 << bit
			wantBadSnapshot(t, fmt.Sprintf("byte %d bit %d flipped", i, bit), bad, int64(len(bad)))
			bad[i] ^= 1 << bit
		}
	}
}

// TestSnapshotFileCorrupt: fields out of range are refused even under a
// right checksum.
func TestSnapshotFileCorrupt(t *testing.T) {
	header := func(version uint64) []byte {
		return binary.AppendUvarint([]byte(snapshotMagic), version)
	}
	entry := func(b []byte, key string, flags byte) []byte {
		b = appendSnapshotString(b, key)
		b = binary.AppendUvarint(b, 0) // tags
		b = binary.AppendVarint(b, 0)  // expiry
		b = append(b, flags)
		return binary.AppendUvarint(b, 0) // value
	}
	oneGroup := func(name string) []byte {
		b := binary.AppendUvarint(header(snapshotVersion), 1)
		b = appendSnapshotString(b, name)
		return binary.AppendUvarint(b, 1)
	}
	withSum := func(b []byte) []byte { return resum(append(b, make([]byte, snapshotSumLen)...)) }
	tests := []struct {
		name string
		data []byte
		want string // in the error
	}{
		{"other magic", withSum(append([]byte("MCSNAP\r\x00"), 1, 0)), "not a snapshot"},
		{"version 0", withSum(binary.AppendUvarint(header(0), 0)), "version 0, want 1"},
		{"version 2", withSum(binary.AppendUvarint(header(2), 0)), "version 2, want 1"},
		{"huge version", withSum(binary.AppendUvarint(header(math.MaxUint64), 0)), "version"},
		{"varint overflow", withSum(append(header(1), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02)), "varint over 64 bits"},
		{"empty group name", withSum(appendSnapshotString(binary.AppendUvarint(header(1), 1), "")), "group name of 0 bytes"},
		{"long group name", withSum(binary.AppendUvarint(binary.AppendUvarint(header(1), 1), MaxKeyLen+1)), "group name of 513 bytes"},
		{"same group twice", withSum(binary.AppendUvarint(appendSnapshotString(binary.AppendUvarint(appendSnapshotString(binary.AppendUvarint(header(1), 2), "g"), 0), "g"), 0)), `group "g" twice`},
		{"empty key", withSum(entry(oneGroup("g"), "", 0)), "key of 0 bytes"},
		{"long key", withSum(entry(oneGroup("g"), strings.Repeat("k", MaxKeyLen+1), 0)), "key of 513 bytes"},
		{"unknown flag", withSum(entry(oneGroup("g"), "k", 2)), "unknown flags 0x2"},
		{"empty tag", withSum(appendSnapshotString(binary.AppendUvarint(appendSnapshotString(oneGroup("g"), "k"), 1), "")), "tag of 0 bytes"},
		{"wrong checksum", append(binary.AppendUvarint(header(1), 0), 1, 2, 3, 4, 5, 6, 7, 8), "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wantBadSnapshot(t, tt.name, tt.data, 1<<20)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	// The valid counterpart of the flag case decodes.
	if _, err := decodeSnapshot(bytes.NewReader(withSum(entry(oneGroup("g"), "k", snapshotHot))), 1<<20); err != nil {
		t.Errorf("valid hot entry: %v", err)
	}
}

// TestSnapshotFileTooLarge: a file over maxBytes is refused, and the
// decoder reads at most one byte past the limit.
func TestSnapshotFileTooLarge(t *testing.T) {
	data := mustEncodeSnapshot(t, sampleSnapshot())
	n := int64(len(data))
	if _, err := decodeSnapshot(bytes.NewReader(data), n); err != nil {
		t.Fatalf("decodeSnapshot at the limit: %v", err)
	}
	for _, max := range []int64{n - 1, n / 2, 1, 0, -1} {
		err := wantBadSnapshot(t, "maxBytes "+strconv.FormatInt(max, 10), data, max)
		if !strings.Contains(err.Error(), "over") {
			t.Errorf("maxBytes %d: error %q, want one saying over", max, err)
		}
	}

	// An endless stream after a valid start.
	endless := &countingReader{r: io.MultiReader(bytes.NewReader(data[:len(data)-snapshotSumLen]), zeroReader{})}
	if _, err := decodeSnapshot(endless, n+100); err == nil || !errors.Is(err, errBadSnapshot) {
		t.Fatalf("endless stream: %v, want errBadSnapshot", err)
	}
	if endless.n > n+101 {
		t.Errorf("read %d bytes of an endless stream with maxBytes %d", endless.n, n+100)
	}

	// readSnapshotFile refuses by size before reading.
	dir := t.TempDir()
	if err := writeSnapshotFile(dir, sampleSnapshot()); err != nil {
		t.Fatal(err)
	}
	if _, err := readSnapshotFile(dir, n-1); !errors.Is(err, errBadSnapshot) {
		t.Errorf("readSnapshotFile(maxBytes %d) = %v, want errBadSnapshot", n-1, err)
	}
	if _, err := readSnapshotFile(dir, n); err != nil {
		t.Errorf("readSnapshotFile(maxBytes %d) = %v", n, err)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSnapshotFileLyingLengths: counts and lengths that the file does not
// hold cost no more memory than the bytes that are there, however large
// maxBytes is.
func TestSnapshotFileLyingLengths(t *testing.T) {
	start := func() []byte {
		b := binary.AppendUvarint([]byte(snapshotMagic), snapshotVersion)
		return appendSnapshotString(binary.AppendUvarint(b, 1), "g")
	}
	entryHead := func(ntags uint64) []byte {
		b := binary.AppendUvarint(start(), 1)
		return binary.AppendUvarint(appendSnapshotString(b, "k"), ntags)
	}
	value := func(n uint64, have int) []byte {
		b := binary.AppendUvarint(entryHead(0), 0)
		b = append(b, 0) // flags
		b = binary.AppendUvarint(b, n)
		return append(b, make([]byte, have)...)
	}
	const huge = 1 << 40
	tests := []struct {
		name     string
		data     []byte
		maxBytes int64
		maxAlloc uint64
	}{
		{"groups", binary.AppendUvarint(binary.AppendUvarint([]byte(snapshotMagic), snapshotVersion), 1<<62), huge, 1 << 20},
		{"entries", binary.AppendUvarint(start(), 1<<50), huge, 1 << 20},
		{"tags", entryHead(1 << 50), huge, 1 << 20},
		{"value within the limit", value(huge/2, 100), huge, 2 << 20},
		{"value over the limit", value(math.MaxUint64, 100), 1 << 30, 1 << 20},
		{"value, some bytes there", value(huge/2, 3<<20), huge, 12 << 20},
		{"value at the chunk", value(snapshotChunk, 10), huge, 2 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			groups, err := decodeSnapshot(bytes.NewReader(tt.data), tt.maxBytes)
			runtime.ReadMemStats(&after)
			if err == nil || !errors.Is(err, errBadSnapshot) || groups != nil {
				t.Fatalf("decodeSnapshot = %d groups, %v; want errBadSnapshot", len(groups), err)
			}
			// TotalAlloc counts the whole process (other goroutines, the
			// race detector): a margin of 4x, still far from what a lying
			// length would cost (gigabytes).
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*tt.maxAlloc {
				t.Errorf("allocated %d bytes for %d bytes of input, want at most %d", alloc, len(tt.data), 4*tt.maxAlloc)
			}
		})
	}
}

// TestSnapshotFileRefusesInvalid: encodeSnapshot refuses what the decoder
// would, and writes nothing then.
func TestSnapshotFileRefusesInvalid(t *testing.T) {
	long := strings.Repeat("x", MaxKeyLen+1)
	one := func(e snapshotEntry) []snapshotGroup {
		return []snapshotGroup{{Name: "g", Entries: []snapshotEntry{e}}}
	}
	tests := []struct {
		name   string
		groups []snapshotGroup
		want   error
	}{
		{"empty group name", []snapshotGroup{{Name: ""}}, ErrInvalidName},
		{"long group name", []snapshotGroup{{Name: long}}, ErrInvalidName},
		{"same group twice", []snapshotGroup{{Name: "g"}, {Name: "g"}}, ErrInvalidName},
		{"empty key", one(snapshotEntry{Key: ""}), ErrEmptyKey},
		{"long key", one(snapshotEntry{Key: long}), ErrKeyTooLong},
		{"empty tag", one(snapshotEntry{Key: "k", Tags: []string{"a", ""}}), ErrInvalidTag},
		{"long tag", one(snapshotEntry{Key: "k", Tags: []string{long}}), ErrInvalidTag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := encodeSnapshot(&buf, tt.groups); !errors.Is(err, tt.want) {
				t.Errorf("encodeSnapshot = %v, want %v", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("encodeSnapshot wrote %d bytes, want none", buf.Len())
			}
		})
	}
}

func TestSnapshotFileMissing(t *testing.T) {
	groups, err := readSnapshotFile(t.TempDir(), 1<<20)
	if groups != nil || err != nil {
		t.Errorf("readSnapshotFile(empty dir) = %v, %v; want nil, nil", groups, err)
	}
	groups, err = readSnapshotFile(filepath.Join(t.TempDir(), "absent"), 1<<20)
	if groups != nil || err != nil {
		t.Errorf("readSnapshotFile(missing dir) = %v, %v; want nil, nil", groups, err)
	}
}

// TestSnapshotFileUnreadable: a corrupt file, or a directory in its place,
// is refused with errBadSnapshot.
func TestSnapshotFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), []byte("MCSNAP\r\n\x01garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if groups, err := readSnapshotFile(dir, 1<<20); groups != nil || !errors.Is(err, errBadSnapshot) {
		t.Errorf("readSnapshotFile(corrupt) = %v, %v; want nil, errBadSnapshot", groups, err)
	}
	dir = t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, snapshotFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if groups, err := readSnapshotFile(dir, 1<<20); groups != nil || !errors.Is(err, errBadSnapshot) {
		t.Errorf("readSnapshotFile(a directory) = %v, %v; want nil, errBadSnapshot", groups, err)
	}
}

// TestSnapshotFileAtomic: a second write replaces the first, a failed write
// leaves the previous file, and no temporary file stays behind.
func TestSnapshotFileAtomic(t *testing.T) {
	dir := t.TempDir()
	first := sampleSnapshot()
	second := []snapshotGroup{{Name: "second", Entries: []snapshotEntry{{Key: "k", Value: []byte("v2")}}}}
	wantFiles := func() {
		t.Helper()
		des, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(des) != 1 || des[0].Name() != snapshotFile {
			var names []string
			for _, de := range des {
				names = append(names, de.Name())
			}
			t.Errorf("dir holds %q, want only %q", names, snapshotFile)
		}
	}
	wantRead := func(want []snapshotGroup) {
		t.Helper()
		got, err := readSnapshotFile(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffSnapshot(got, normalSnapshot(want)); d != "" {
			t.Error(d)
		}
	}

	if err := writeSnapshotFile(dir, first); err != nil {
		t.Fatal(err)
	}
	wantFiles()
	wantRead(first)
	if err := writeSnapshotFile(dir, second); err != nil {
		t.Fatal(err)
	}
	wantFiles()
	wantRead(second)
	fi, err := os.Stat(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}

	// A write that fails half-way (an invalid entry after a large one)
	// keeps the previous file and removes its temporary file.
	bad := []snapshotGroup{{Name: "g", Entries: []snapshotEntry{
		{Key: "big", Value: make([]byte, 1<<20)},
		{Key: ""},
	}}}
	if err := writeSnapshotFile(dir, bad); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("writeSnapshotFile(invalid) = %v, want ErrEmptyKey", err)
	}
	wantFiles()
	wantRead(second)

	if err := writeSnapshotFile(filepath.Join(dir, "absent"), second); err == nil {
		t.Error("writeSnapshotFile(missing dir) = nil, want an error")
	}
	wantFiles()
}

// snapshotSeeds returns the seed corpus of FuzzDecodeSnapshot.
func snapshotSeeds(tb testing.TB) [][]byte {
	valid := [][]byte{
		mustEncodeSnapshot(tb, nil),
		mustEncodeSnapshot(tb, []snapshotGroup{{Name: "g"}}),
		mustEncodeSnapshot(tb, sampleSnapshot()),
		mustEncodeSnapshot(tb, []snapshotGroup{{Name: "g", Entries: []snapshotEntry{
			{Key: "k", Value: []byte("v"), Tags: []string{"t", "u"}, Expires: time.Unix(1700000000, 5), Hot: true},
		}}}),
	}
	sample := valid[2]
	other := slices.Clone(valid[0])
	other[len(snapshotMagic)] = 2 // version 2
	return append(valid,
		sample[:len(sample)/2], // truncated
		resum(other),
		nil,
	)
}

// TestSnapshotFileSeedCorpus checks that testdata/fuzz holds a file for
// every seed (so that plain `go test` runs them), and rewrites them with
// -update-snapshot-corpus after a format change.
func TestSnapshotFileSeedCorpus(t *testing.T) {
	seedcorpus.Check(t, "FuzzDecodeSnapshot", snapshotSeeds(t), *updateSnapshotCorpus,
		"go test -run TestSnapshotFileSeedCorpus . -update-snapshot-corpus")
}

// FuzzDecodeSnapshot decodes arbitrary bytes, as they are and with their
// last 8 bytes replaced by a right checksum (else nearly every input stops
// at the checksum): decoding never panics, fails only with errBadSnapshot,
// and what it decodes re-encodes to a file that decodes the same.
func FuzzDecodeSnapshot(f *testing.F) {
	for _, seed := range snapshotSeeds(f) {
		f.Add(seed)
	}
	const maxBytes = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, resum(data)} {
			groups, err := decodeSnapshot(bytes.NewReader(in), maxBytes)
			if err != nil {
				if !errors.Is(err, errBadSnapshot) || groups != nil {
					t.Fatalf("decodeSnapshot = %d groups, %v; want nil, errBadSnapshot", len(groups), err)
				}
				continue
			}
			var buf bytes.Buffer
			if err := encodeSnapshot(&buf, groups); err != nil {
				t.Fatalf("re-encode of a decoded snapshot: %v", err)
			}
			if buf.Len() > len(in) {
				t.Fatalf("re-encoded to %d bytes, from %d", buf.Len(), len(in))
			}
			again, err := decodeSnapshot(&buf, maxBytes)
			if err != nil {
				t.Fatalf("decode of the re-encoded snapshot: %v", err)
			}
			if d := diffSnapshot(again, groups); d != "" {
				t.Fatalf("re-encoded snapshot differs: %s", d)
			}
		}
	})
}

// benchSnapshot returns n entries in 4 groups: keys of 16 bytes, values of
// 100, one tag of 1000, an expiry, every 8th a hot copy.
func benchSnapshot(n int) []snapshotGroup {
	groups := make([]snapshotGroup, 4)
	for i := range groups {
		groups[i] = snapshotGroup{Name: "group-" + strconv.Itoa(i), Entries: make([]snapshotEntry, 0, n/len(groups)+1)}
	}
	value := bytes.Repeat([]byte("v"), 100)
	exp := time.Now().Add(time.Hour)
	for i := range n {
		g := &groups[i%len(groups)]
		g.Entries = append(g.Entries, snapshotEntry{
			Key:     fmt.Sprintf("key:%012d", i),
			Value:   value,
			Tags:    []string{"tag:" + strconv.Itoa(i%1000)},
			Expires: exp,
			Hot:     i%8 == 0,
		})
	}
	return groups
}

// BenchmarkSnapshot writes 1M entries to a file (writeSnapshotFile, fsync
// included) and reads them back (readSnapshotFile).
func BenchmarkSnapshot(b *testing.B) {
	const entries = 1_000_000
	groups := benchSnapshot(entries)
	dir := b.TempDir()
	size := func(b *testing.B) int64 {
		fi, err := os.Stat(filepath.Join(dir, snapshotFile))
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := writeSnapshotFile(dir, groups); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(size(b))
		b.ReportMetric(float64(size(b)), "file-bytes")
	})
	b.Run("read", func(b *testing.B) {
		if err := writeSnapshotFile(dir, groups); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(size(b))
		for b.Loop() {
			got, err := readSnapshotFile(dir, 1<<31)
			if err != nil {
				b.Fatal(err)
			}
			if n := len(got[0].Entries) * len(got); n != entries {
				b.Fatalf("read %d entries, want %d", n, entries)
			}
		}
		b.ReportMetric(float64(size(b)), "file-bytes")
	})
}
