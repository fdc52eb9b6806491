package local

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
	"unsafe"
)

// Tier is a bit set selecting a store's caches.
type Tier uint8

// The tiers of a [Store].
const (
	Main    Tier = 1 << iota // keys this node owns (loaded here, or Set here)
	Hot                      // copies of keys another node owns
	StandIn                  // keys this node loaded for an owner that could not be reached
	Both    = Main | Hot
	All     = Main | Hot | StandIn
)

// String returns "main", "hot", "both", "stand-in", "all" or "tier(n)".
func (t Tier) String() string {
	switch t {
	case Main:
		return "main"
	case Hot:
		return "hot"
	case Both:
		return "both"
	case StandIn:
		return "stand-in"
	case All:
		return "all"
	}
	return "tier(" + strconv.Itoa(int(t)) + ")"
}

// EntryOverhead is the fixed number of bytes each entry is charged on top of
// len(key)+len(value)+sum(len(tags)). It is roughly what an entry really
// costs beyond those bytes on a 64-bit platform: simplelru's list element
// holding the packed entry (96 bytes: list links, the key's 64-bit hash, the
// 32-byte packed entry and simplelru's unused expiry fields), the element's
// slot in the LRU's map (24 to 38 bytes depending on the map's load), the
// 3 to 11 byte header of the key+value allocation and its rounding up to a
// size class. A tagged entry also holds a 32-byte record and the caller's
// tag slice, which are not charged.
const EntryOverhead = 144

// Entry is what the store holds for a key. Value and Tags are shared with
// the store: callers must not modify them (copy Value before handing it to
// anyone who might). Value's capacity equals its length.
type Entry struct {
	Value    []byte
	Tags     []string
	Negative bool      // a cached "not found"
	Filled   time.Time // when it was stored (for Age)
	Expires  time.Time // zero: never expires
	Seq      uint64    // the fence sequence its load or fetch started at (see [Store.Add])
}

// Limits of the packed representation. Add refuses larger keys or values.
const (
	maxKeyLen   = 1<<30 - 1
	maxValueLen = math.MaxUint32
)

// Flags in the first byte of an item's buffer.
const (
	flagNegative = 1 << iota // a negative entry
	flagNilValue             // the value was nil (not merely empty)
)

// taggedBit in item.seqBits says that item.p is a *tagged, not the buffer.
// noStaleBit says that the item's TTL was set by Expire: once it expires it
// is gone, never kept for GetStale. Sequences never reach either.
const (
	taggedBit  = 1 << 63
	noStaleBit = 1 << 62
	flagBits   = taggedBit | noStaleBit
)

// never is item.expires for an entry without expiry, so that "now >=
// expires" is false without a special case.
const never = math.MaxInt64

// item is the packed form of an Entry, stored by value in the LRU. It is 32
// bytes, which keeps simplelru's list element at 96 bytes. Key, value,
// their lengths and the flags live in one allocation, the buffer:
//
//	flags byte | uvarint len(key) | uvarint len(value) | key | value
//
// An untagged item points at the buffer; a tagged one at a tagged record,
// which points at the buffer.
type item struct {
	p       unsafe.Pointer // the buffer (*byte), or a *tagged when seqBits&taggedBit != 0
	seqBits uint64         // since of the Add that stored it, plus taggedBit
	filled  int64          // store clock (see Store.nanos)
	expires int64          // store clock; never for no expiry
}

// tagged is what a tagged item points at.
type tagged struct {
	tags []string
	buf  *byte
}

// newItem packs p, filled and expiring at the given store-clock times. It
// copies p.Key and p.Value into one allocation and keeps p.Tags. The caller
// has checked the length limits.
func newItem(p *Put, filled, expires int64) item {
	key, value, tags := p.Key, p.Value, p.Tags
	var flags byte
	if p.Negative {
		flags |= flagNegative
	}
	if value == nil {
		flags |= flagNilValue
	}
	n := 1 + uvarintLen(uint64(len(key))) + uvarintLen(uint64(len(value))) + len(key) + len(value)
	buf := make([]byte, 1, n)
	buf[0] = flags
	buf = binary.AppendUvarint(buf, uint64(len(key)))
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	buf = append(buf, key...)
	buf = append(buf, value...)
	it := item{
		p:       unsafe.Pointer(unsafe.SliceData(buf)),
		seqBits: p.Since &^ flagBits,
		filled:  filled,
		expires: expires,
	}
	if len(tags) > 0 {
		it.p = unsafe.Pointer(&tagged{tags: tags, buf: unsafe.SliceData(buf)})
		it.seqBits |= taggedBit
	}
	return it
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// seq is the since of the Add that stored it.
func (it *item) seq() uint64 { return it.seqBits &^ flagBits }

// tagList returns the entry's tags, shared.
func (it *item) tagList() []string {
	if it.seqBits&taggedBit == 0 {
		return nil
	}
	return (*tagged)(it.p).tags
}

// view returns the decoded buffer header of it.
func (it *item) view() kvView {
	base := it.p
	if it.seqBits&taggedBit != 0 {
		base = unsafe.Pointer((*tagged)(it.p).buf)
	}
	v := kvView{base: base, flags: *(*byte)(base)}
	var off int
	v.klen, off = uvarintAt(base, 1)
	v.vlen, v.off = uvarintAt(base, off)
	return v
}

// uvarintAt decodes the uvarint that newItem wrote at base+off and returns
// it and the offset after it.
func uvarintAt(base unsafe.Pointer, off int) (int, int) {
	var x uint64
	for shift := uint(0); ; shift += 7 {
		b := *(*byte)(unsafe.Add(base, off))
		off++
		if b < 0x80 {
			return int(x | uint64(b)<<shift), off
		}
		x |= uint64(b&0x7f) << shift
	}
}

// kvView is a decoded buffer: the key is at base+off, the value after it.
type kvView struct {
	base       unsafe.Pointer
	flags      byte
	off        int
	klen, vlen int
}

// key returns the stored key without copying.
func (v kvView) key() string {
	if v.klen == 0 {
		return "" // no pointer past the end of the buffer
	}
	return unsafe.String((*byte)(unsafe.Add(v.base, v.off)), v.klen)
}

// value returns the stored value without copying; its capacity is its length.
func (v kvView) value() []byte {
	if v.flags&flagNilValue != 0 {
		return nil
	}
	if v.vlen == 0 {
		return emptyValue // no pointer past the end of the buffer
	}
	return unsafe.Slice((*byte)(unsafe.Add(v.base, v.off+v.klen)), v.vlen)
}

func (it *item) key() string    { return it.view().key() }
func (it *item) value() []byte  { return it.view().value() }
func (it *item) negative() bool { return it.view().flags&flagNegative != 0 }

// cost is the entry's charge against its tier's bound.
func (it *item) cost() int64 {
	v := it.view()
	return int64(v.klen) + int64(v.vlen) + tagBytes(it.tagList()) + EntryOverhead
}

// entryCost is item.cost before packing.
func entryCost(key string, value []byte, tags []string) int64 {
	return int64(len(key)) + int64(len(value)) + tagBytes(tags) + EntryOverhead
}

func tagBytes(tags []string) int64 {
	var n int64
	for _, t := range tags {
		n += int64(len(t))
	}
	return n
}

// expiry returns the store-clock time an entry stored at now with ttl
// expires at: never for ttl <= 0, saturating on overflow.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl <= 0 {
		return never
	}
	e := now + int64(ttl)
	if e < now {
		return never - 1
	}
	return e
}

// emptyValue is returned for a stored non-nil empty value.
var emptyValue = []byte{}
