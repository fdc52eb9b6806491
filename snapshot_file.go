package meshcache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The snapshot file format (version 1). All integers are encoding/binary
// varints: uvarint for lengths and counts, a signed varint for the expiry.
//
//	file     = magic version groupCount group* checksum
//	magic    = "MCSNAP\r\n"                  8 bytes
//	version  = uvarint                       1; every other version is refused
//	group    = len name entryCount entry*
//	entry    = len key tagCount (len tag)* expiry flags len value
//	expiry   = varint                        Unix nanoseconds; 0: none
//	flags    = 1 byte                        bit 0: hot; other bits must be 0
//	checksum = 8 bytes, little-endian        xxhash64 of every byte before it
//
// A group name, key or tag is 1 to [MaxKeyLen] bytes; group names are
// unique within a file. A value is at most what is left of the reader's
// byte limit. The checksum ends the file: nothing may follow it.
//
// The file is used whole or not at all. A file that is truncated (even by
// only its checksum), has a wrong checksum, trailing bytes, a field out of
// range, another magic or version, or more bytes than the reader's limit
// is refused with an error wrapping [errBadSnapshot], and nothing of it is
// kept: the decoder returns no groups with an error.
//
// Conversions, both ways:
//   - A nil and an empty Value both decode as an empty, non-nil []byte{}.
//     No tags decode as nil Tags.
//   - Expires is written as its Unix nanoseconds, clamped to what an int64
//     holds (years 1678 to 2262: an entry expiring later expires in 2262), and
//     read back as time.Unix(0, n): the same instant, without a monotonic
//     reading, in the local time zone. An expiry of exactly the Unix epoch
//     is written as -1 ns, so that it does not read back as "none".
//   - Tags equal within a file share one string when decoded.
const (
	snapshotMagic   = "MCSNAP\r\n"
	snapshotVersion = 1

	snapshotHot = 1 << 0 // flags bit: a hot copy

	// Smallest encodings, used to refuse counts the rest of the file
	// cannot hold before anything is allocated for them.
	minSnapshotGroup = 3 // name length, 1-byte name, entry count
	minSnapshotEntry = 6 // key length, 1-byte key, tag count, expiry, flags, value length
	minSnapshotTag   = 2 // tag length, 1-byte tag
	snapshotSumLen   = 8

	// snapshotChunk is the most the decoder allocates ahead of what it has
	// read: a slice up to this size is allocated whole from its length,
	// a longer one grows as its bytes arrive. Entry slices start at
	// snapshotChunk/1024 elements at most.
	snapshotChunk = 1 << 20

	// snapshotBufSize is the buffer size of both the encoder and the decoder.
	snapshotBufSize = 64 << 10

	// maxSnapshotInterned bounds the decoder's table of distinct tags.
	maxSnapshotInterned = 1 << 16
)

// snapshotEntry is one cached entry in a snapshot.
type snapshotEntry struct {
	Key     string
	Value   []byte
	Tags    []string
	Expires time.Time // absolute wall-clock expiry; zero: none
	Hot     bool      // a hot copy (else the main cache)
}

// snapshotGroup is one group's entries.
type snapshotGroup struct {
	Name    string
	Entries []snapshotEntry
}

// errBadSnapshot is wrapped by every error of a snapshot that cannot be
// used (torn, truncated, corrupt, other version, too large).
var errBadSnapshot = errors.New("meshcache: unusable snapshot")

// snapshotFile is the file name inside Config.SnapshotDir.
const snapshotFile = "meshcache.snapshot"

// errSnapshotTooLarge is returned by snapshotSource past its limit; the
// decoder reports it as a file over maxBytes.
var errSnapshotTooLarge = errors.New("snapshot over the byte limit")

// badSnapshot returns an error wrapping errBadSnapshot.
func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadSnapshot}, args...)...)
}

// encodeSnapshot writes groups to w in the snapshot format. It first checks
// that the decoder will accept every name, key and tag (else it returns an
// error wrapping ErrInvalidName, ErrEmptyKey, ErrKeyTooLong or
// ErrInvalidTag, having written nothing), so that what it writes can be
// read back. Errors of w are returned as they are. It does not modify
// groups.
func encodeSnapshot(w io.Writer, groups []snapshotGroup) error {
	if err := checkSnapshot(groups); err != nil {
		return err
	}
	// Each head is appended to the bufio.Writer's free space, so that
	// writing it copies nothing unless the buffer is full.
	bw := bufio.NewWriterSize(w, snapshotBufSize)
	sw := snapshotWriter{w: bw, sum: xxhash.New()}
	b := append(bw.AvailableBuffer(), snapshotMagic...)
	b = binary.AppendUvarint(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(groups)))
	if err := sw.write(b); err != nil {
		return err
	}
	for _, g := range groups {
		b = appendSnapshotString(bw.AvailableBuffer(), g.Name)
		b = binary.AppendUvarint(b, uint64(len(g.Entries)))
		if err := sw.write(b); err != nil {
			return err
		}
		for i := range g.Entries {
			e := &g.Entries[i]
			b = appendSnapshotString(bw.AvailableBuffer(), e.Key)
			b = binary.AppendUvarint(b, uint64(len(e.Tags)))
			for _, t := range e.Tags {
				b = appendSnapshotString(b, t)
			}
			b = binary.AppendVarint(b, snapshotExpiry(e.Expires))
			var flags byte
			if e.Hot {
				flags |= snapshotHot
			}
			b = append(b, flags)
			b = binary.AppendUvarint(b, uint64(len(e.Value)))
			if err := sw.write(b); err != nil {
				return err
			}
			if err := sw.write(e.Value); err != nil {
				return err
			}
		}
	}
	b = binary.LittleEndian.AppendUint64(bw.AvailableBuffer(), sw.sum.Sum64())
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}

// snapshotWriter writes to w and hashes what it writes.
type snapshotWriter struct {
	w   *bufio.Writer
	sum *xxhash.Digest
}

func (sw *snapshotWriter) write(p []byte) error {
	sw.sum.Write(p) // never fails
	_, err := sw.w.Write(p)
	return err
}

// checkSnapshot reports the first name, key or tag that decodeSnapshot
// would refuse.
func checkSnapshot(groups []snapshotGroup) error {
	names := make(map[string]struct{}, len(groups))
	for _, g := range groups {
		if g.Name == "" || len(g.Name) > MaxKeyLen {
			return fmt.Errorf("meshcache: snapshot: group name of %d bytes: %w", len(g.Name), ErrInvalidName)
		}
		if _, dup := names[g.Name]; dup {
			return fmt.Errorf("meshcache: snapshot: group %q twice: %w", g.Name, ErrInvalidName)
		}
		names[g.Name] = struct{}{}
		for i := range g.Entries {
			e := &g.Entries[i]
			if e.Key == "" {
				return fmt.Errorf("meshcache: snapshot: group %q: %w", g.Name, ErrEmptyKey)
			}
			if len(e.Key) > MaxKeyLen {
				return fmt.Errorf("meshcache: snapshot: group %q: key of %d bytes: %w", g.Name, len(e.Key), ErrKeyTooLong)
			}
			for _, t := range e.Tags {
				if t == "" || len(t) > MaxKeyLen {
					return fmt.Errorf("meshcache: snapshot: group %q, key %q: tag of %d bytes: %w", g.Name, e.Key, len(t), ErrInvalidTag)
				}
			}
		}
	}
	return nil
}

func appendSnapshotString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

var (
	minSnapshotTime = time.Unix(0, math.MinInt64)
	maxSnapshotTime = time.Unix(0, math.MaxInt64)
)

// snapshotExpiry returns the expiry field for t (see the format).
func snapshotExpiry(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minSnapshotTime):
		return math.MinInt64
	case t.After(maxSnapshotTime):
		return math.MaxInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return -1 // the epoch itself: keep "expired", not "none"
}

// decodeSnapshot reads a whole snapshot from r, refusing one over maxBytes
// (a maxBytes of zero or less refuses every snapshot). It reads at most
// maxBytes+1 bytes of r, and never allocates more than in proportion to
// what it has read, plus snapshotChunk: a length or count that the rest of
// the file cannot hold is refused before anything is allocated for it,
// and a long value grows as it arrives. Every error wraps errBadSnapshot;
// an error of r is wrapped too. On error it returns no groups. It never
// panics.
func decodeSnapshot(r io.Reader, maxBytes int64) ([]snapshotGroup, error) {
	src := &snapshotSource{r: r, max: maxBytes, sum: xxhash.New()}
	size := snapshotBufSize
	if maxBytes < int64(size) {
		size = int(max(maxBytes, 0)) + 1 // bufio makes it at least 16
	}
	d := &snapshotDecoder{src: src, r: bufio.NewReaderSize(src, size)}
	groups, err := d.decode()
	if err != nil {
		return nil, d.fail(err)
	}
	return groups, nil
}

// snapshotSource reads from r, counts what it read, refuses to read past
// max+1 bytes, and hashes every byte it read but the last 8 (the checksum,
// once r is at its end).
type snapshotSource struct {
	r     io.Reader
	n     int64 // bytes read from r
	max   int64
	sum   *xxhash.Digest
	tail  [snapshotSumLen]byte // the last bytes read, not hashed yet
	ntail int
}

func (s *snapshotSource) Read(p []byte) (int, error) {
	if s.n > s.max {
		return 0, errSnapshotTooLarge
	}
	if rem := s.max - s.n; rem < int64(len(p)) {
		p = p[:rem+1] // one byte more tells a file over max from one at max
	}
	k, err := s.r.Read(p)
	if k < 0 || k > len(p) {
		return 0, fmt.Errorf("read returned %d of %d bytes", k, len(p))
	}
	s.n += int64(k)
	s.hold(p[:k])
	return k, err
}

// hold hashes what p pushes out of the tail and keeps the last bytes.
func (s *snapshotSource) hold(p []byte) {
	if len(p) >= snapshotSumLen {
		s.sum.Write(s.tail[:s.ntail])
		s.sum.Write(p[:len(p)-snapshotSumLen])
		s.ntail = copy(s.tail[:], p[len(p)-snapshotSumLen:])
		return
	}
	var both [2 * snapshotSumLen]byte
	b := append(append(both[:0], s.tail[:s.ntail]...), p...)
	if over := len(b) - snapshotSumLen; over > 0 {
		s.sum.Write(b[:over])
		b = b[over:]
	}
	s.ntail = copy(s.tail[:], b)
}

// snapshotDecoder parses a snapshot from r, a buffered reader of src.
type snapshotDecoder struct {
	src     *snapshotSource
	r       *bufio.Reader
	scratch [MaxKeyLen]byte
	tags    map[string]string // interned tags
}

// consumed returns how many bytes the decoder has parsed.
func (d *snapshotDecoder) consumed() int64 {
	return d.src.n - int64(d.r.Buffered())
}

// left returns how many bytes may follow what was parsed, checksum included.
func (d *snapshotDecoder) left() uint64 {
	if n := d.src.max - d.consumed(); n > 0 {
		return uint64(n)
	}
	return 0
}

// fail turns an error of decode into one wrapping errBadSnapshot.
func (d *snapshotDecoder) fail(err error) error {
	switch {
	case d.src.n > d.src.max || errors.Is(err, errSnapshotTooLarge):
		return badSnapshot("over %d bytes", d.src.max)
	case errors.Is(err, errBadSnapshot):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badSnapshot("truncated at byte %d", d.consumed())
	}
	return fmt.Errorf("%w: read at byte %d: %w", errBadSnapshot, d.consumed(), err)
}

func (d *snapshotDecoder) decode() ([]snapshotGroup, error) {
	var magic [len(snapshotMagic)]byte
	if _, err := io.ReadFull(d.r, magic[:]); err != nil {
		return nil, err
	}
	if string(magic[:]) != snapshotMagic {
		return nil, badSnapshot("not a snapshot (magic %q)", magic[:])
	}
	version, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if version != snapshotVersion {
		return nil, badSnapshot("version %d, want %d", version, snapshotVersion)
	}
	ngroups, err := d.count("groups", minSnapshotGroup)
	if err != nil {
		return nil, err
	}
	groups := make([]snapshotGroup, 0, min(ngroups, 64))
	names := make(map[string]struct{}, min(ngroups, 64))
	for range ngroups {
		name, err := d.string("group name")
		if err != nil {
			return nil, err
		}
		if _, dup := names[name]; dup {
			return nil, badSnapshot("group %q twice", name)
		}
		names[name] = struct{}{}
		entries, err := d.entries()
		if err != nil {
			return nil, err
		}
		groups = append(groups, snapshotGroup{Name: name, Entries: entries})
	}
	return groups, d.end()
}

func (d *snapshotDecoder) entries() ([]snapshotEntry, error) {
	n, err := d.count("entries", minSnapshotEntry)
	if err != nil || n == 0 {
		return nil, err
	}
	es := make([]snapshotEntry, 0, min(n, snapshotChunk/1024))
	for range n {
		if len(es) == cap(es) {
			es = slices.Grow(es, min(n-len(es), len(es))) // doubles: 2x what was read, at most
		}
		var e snapshotEntry
		if e.Key, err = d.string("key"); err != nil {
			return nil, err
		}
		ntags, err := d.count("tags", minSnapshotTag)
		if err != nil {
			return nil, err
		}
		if ntags > 0 {
			e.Tags = make([]string, 0, min(ntags, 64))
			for range ntags {
				t, err := d.tag()
				if err != nil {
					return nil, err
				}
				e.Tags = append(e.Tags, t)
			}
		}
		expiry, err := d.varint()
		if err != nil {
			return nil, err
		}
		if expiry != 0 {
			e.Expires = time.Unix(0, expiry)
		}
		flags, err := d.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if flags&^snapshotHot != 0 {
			return nil, badSnapshot("unknown flags %#x at byte %d", flags, d.consumed()-1)
		}
		e.Hot = flags&snapshotHot != 0
		if e.Value, err = d.value(); err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// end reads the checksum, checks that nothing follows it, and compares it
// with the hash of everything before it.
func (d *snapshotDecoder) end() error {
	var sum [snapshotSumLen]byte
	if _, err := io.ReadFull(d.r, sum[:]); err != nil {
		return err
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err != nil {
			return err
		}
		return badSnapshot("bytes after the checksum at byte %d", d.consumed()-1)
	}
	// At the end of r the source's tail is the checksum just read, and
	// its hash covers all that came before.
	if d.src.ntail != snapshotSumLen || d.src.tail != sum {
		return badSnapshot("checksum misread") // cannot happen
	}
	if got, want := d.src.sum.Sum64(), binary.LittleEndian.Uint64(sum[:]); got != want {
		return badSnapshot("checksum %#016x, want %#016x", got, want)
	}
	return nil
}

// uvarint reads an encoding/binary uvarint.
func (d *snapshotDecoder) uvarint() (uint64, error) {
	var x uint64
	for i := range binary.MaxVarintLen64 {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<(7*i), nil
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, badSnapshot("varint over 64 bits before byte %d", d.consumed())
}

// varint reads an encoding/binary (zig-zag) varint.
func (d *snapshotDecoder) varint() (int64, error) {
	ux, err := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, err
}

// count reads a count of items of at least size bytes each, and refuses
// one the rest of the file cannot hold.
func (d *snapshotDecoder) count(what string, size uint64) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > d.left()/size {
		return 0, badSnapshot("%d %s at byte %d, more than the rest of the file holds", n, what, d.consumed())
	}
	return int(n), nil // at most maxBytes/size
}

// bytes reads a length-prefixed field of 1 to MaxKeyLen bytes into
// d.scratch.
func (d *snapshotDecoder) bytes(what string) ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxKeyLen {
		return nil, badSnapshot("%s of %d bytes at byte %d", what, n, d.consumed())
	}
	b := d.scratch[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (d *snapshotDecoder) string(what string) (string, error) {
	b, err := d.bytes(what)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// tag reads a tag and interns it.
func (d *snapshotDecoder) tag() (string, error) {
	b, err := d.bytes("tag")
	if err != nil {
		return "", err
	}
	if t, ok := d.tags[string(b)]; ok {
		return t, nil
	}
	t := string(b)
	if d.tags == nil {
		d.tags = make(map[string]string)
	}
	if len(d.tags) < maxSnapshotInterned {
		d.tags[t] = t
	}
	return t, nil
}

// value reads a length-prefixed value. A value longer than snapshotChunk
// grows as its bytes arrive, so that a lying length costs at most about
// twice the bytes that are really there.
func (d *snapshotDecoder) value() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > d.left() {
		return nil, badSnapshot("value of %d bytes at byte %d, more than the rest of the file holds", n, d.consumed())
	}
	if n <= snapshotChunk {
		b := make([]byte, n)
		if _, err := io.ReadFull(d.r, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, d.r, int64(n)); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil // exact size: the cache keeps it
}

// writeSnapshotFile writes groups to dir/snapshotFile atomically: it
// encodes them to a temporary file in dir (mode 0600), syncs it, renames it
// over snapshotFile and syncs dir. dir must exist. On error before the
// rename, the previous file (if any) is untouched and the temporary file
// removed. An error syncing dir after the rename is returned too, but then
// the new file is in place (a crash may still bring back the old one).
// A crash during the write can leave a temporary file
// (snapshotFile+".tmp-*") behind, which nothing removes.
func writeSnapshotFile(dir string, groups []snapshotGroup) (err error) {
	f, err := os.CreateTemp(dir, snapshotFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("meshcache: write snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil && tmp != "" {
			f.Close() // may already be closed
			os.Remove(tmp)
		}
	}()
	if err := encodeSnapshot(f, groups); err != nil {
		return fmt.Errorf("meshcache: write snapshot %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("meshcache: write snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("meshcache: write snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, snapshotFile)); err != nil {
		return fmt.Errorf("meshcache: write snapshot: %w", err)
	}
	tmp = "" // renamed: nothing to remove
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("meshcache: write snapshot: sync %s: %w", dir, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSnapshotFile reads dir/snapshotFile. A missing file returns (nil,
// nil). Every other error, a file over maxBytes or unusable included,
// wraps errBadSnapshot.
func readSnapshotFile(dir string, maxBytes int64) ([]snapshotGroup, error) {
	path := filepath.Join(dir, snapshotFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > maxBytes {
		return nil, fmt.Errorf("%w: %s: %d bytes, over %d", errBadSnapshot, path, fi.Size(), maxBytes)
	}
	groups, err := decodeSnapshot(f, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return groups, nil
}
