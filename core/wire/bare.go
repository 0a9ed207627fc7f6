package wire

import (
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// BARE primitives. A uint is an unsigned LEB128 varint of at most 10 bytes (64 bits); data
// and string are a uint length followed by that many bytes; optional<T> is a u8 flag (0
// absent, 1 present) followed by T when present; []T is a uint count followed by the items;
// an enum or union tag is a uint.

// MaxUintLen is the longest encoding of a uint.
const MaxUintLen = 10

// UintSize returns the number of bytes AppendUint writes for v.
func UintSize(v uint64) int {
	// 1 byte per started group of 7 bits; 0 still needs one byte.
	return (bits.Len64(v|1) + 6) / 7
}

// DataSize returns the number of bytes AppendData writes for n bytes of data.
func DataSize(n int) int { return UintSize(uint64(n)) + n }

// AppendUint appends v as a BARE uint (LEB128).
func AppendUint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// AppendU8 appends v as a BARE u8.
func AppendU8(dst []byte, v uint8) []byte { return append(dst, v) }

// AppendData appends b as BARE data (length-prefixed bytes).
func AppendData(dst, b []byte) []byte {
	dst = AppendUint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendString appends s as a BARE string (length-prefixed UTF-8 bytes). The caller is
// responsible for s being valid UTF-8; decoders reject strings that are not.
func AppendString(dst []byte, s string) []byte {
	dst = AppendUint(dst, uint64(len(s)))
	return append(dst, s...)
}

// AppendBool appends a BARE bool: 1 for true, 0 for false. An optional's presence flag is
// encoded the same way.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// Optional is a BARE optional<T>: Value is meaningful only when Valid is true.
type Optional[T any] struct {
	Value T
	Valid bool
}

// Some returns a present Optional holding v.
func Some[T any](v T) Optional[T] { return Optional[T]{Value: v, Valid: true} }

// None returns an absent Optional.
func None[T any]() Optional[T] { return Optional[T]{} }

func (o Optional[T]) String() string {
	if !o.Valid {
		return "none"
	}
	return fmt.Sprint(o.Value)
}

// optionalUintSize and friends return encoded sizes of optional values.
func optionalUintSize(o Optional[uint64]) int {
	if !o.Valid {
		return 1
	}
	return 1 + UintSize(o.Value)
}

func optionalStringSize(o Optional[string]) int {
	if !o.Valid {
		return 1
	}
	return 1 + DataSize(len(o.Value))
}

// AppendOptionalUint appends a BARE optional<uint>.
func AppendOptionalUint(dst []byte, o Optional[uint64]) []byte {
	if !o.Valid {
		return append(dst, 0)
	}
	return AppendUint(append(dst, 1), o.Value)
}

// AppendOptionalString appends a BARE optional<string>.
func AppendOptionalString(dst []byte, o Optional[string]) []byte {
	if !o.Valid {
		return append(dst, 0)
	}
	return AppendString(append(dst, 1), o.Value)
}

// Reader decodes BARE values from a byte slice. Errors are sticky: after the first error
// every method returns a zero value and Err reports that first error, so a decoder can read
// all fields and check once. The zero Reader reads an empty input.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	buf []byte
	off int
	typ string
	err error
}

// NewReader returns a Reader over b. typ names the type being decoded; it appears in errors.
func NewReader(b []byte, typ string) *Reader {
	return &Reader{buf: b, typ: typ}
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.buf) - r.off }

// Offset returns the number of bytes read so far.
func (r *Reader) Offset() int { return r.off }

// Fail records a decode error at the current offset (unless one is already recorded), so
// that callers can add their own semantic checks. err may be nil.
func (r *Reader) Fail(reason string, err error) {
	if r.err == nil {
		r.err = &DecodeError{Type: r.typ, Offset: r.off, Reason: reason, Err: err}
	}
}

// Finish returns the first error, or an error if unread bytes remain.
func (r *Reader) Finish() error {
	if r.err == nil && r.off != len(r.buf) {
		r.Fail(fmt.Sprintf("%d trailing byte(s)", len(r.buf)-r.off), nil)
	}
	return r.err
}

// ReadU8 reads a u8.
func (r *Reader) ReadU8() uint8 {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.buf) {
		r.Fail("truncated u8", nil)
		return 0
	}
	v := r.buf[r.off]
	r.off++
	return v
}

// ReadUint reads a BARE uint. It rejects encodings longer than needed (a final 0x00 byte after
// a continuation byte), values above 2^64-1 and truncated input.
func (r *Reader) ReadUint() uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < MaxUintLen; i++ {
		if r.off+i >= len(r.buf) {
			r.Fail("truncated uint", nil)
			return 0
		}
		c := r.buf[r.off+i]
		if i == MaxUintLen-1 && c > 1 {
			r.Fail("uint overflows 64 bits", nil)
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				r.Fail("overlong uint encoding", nil)
				return 0
			}
			r.off += i + 1
			return v
		}
	}
	// Unreachable: the 10th byte either fails above or ends the loop.
	r.Fail("uint overflows 64 bits", nil)
	return 0
}

// length reads a uint length and checks that n*unit bytes remain. unit >= 1.
func (r *Reader) length(what string, unit int) int {
	n := r.ReadUint()
	if r.err != nil {
		return 0
	}
	if n > uint64(r.Len()/unit) {
		r.Fail(fmt.Sprintf("%s %d exceeds the %d remaining byte(s)", what, n, r.Len()), nil)
		return 0
	}
	return int(n)
}

// ReadData reads BARE data. The result aliases the input (capacity clipped to its length); it is
// empty but non-nil for a zero length.
func (r *Reader) ReadData() []byte {
	n := r.length("data length", 1)
	if r.err != nil {
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// ReadString reads a BARE string (copied) and checks that it is valid UTF-8.
func (r *Reader) ReadString() string {
	start := r.off
	b := r.ReadData()
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.off = start
		r.Fail("string is not valid UTF-8", nil)
		return ""
	}
	return string(b)
}

// ReadOptional reads a BARE optional flag and reports whether a value follows. Flags other than
// 0 and 1 are an error.
func (r *Reader) ReadOptional() bool {
	start := r.off
	f := r.ReadU8()
	if f > 1 {
		r.off = start
		r.Fail(fmt.Sprintf("optional flag %d is neither 0 nor 1", f), nil)
	}
	return f == 1
}

// readBool reads a BARE bool (one byte, 0 or 1); other values are an error naming what.
func (r *Reader) readBool(what string) bool {
	start := r.off
	f := r.ReadU8()
	if f > 1 {
		r.off = start
		r.Fail(fmt.Sprintf("%s: bool %d is neither 0 nor 1", what, f), nil)
	}
	return f == 1
}

// ReadOptionalUint reads a BARE optional<uint>.
func (r *Reader) ReadOptionalUint() Optional[uint64] {
	if !r.ReadOptional() {
		return Optional[uint64]{}
	}
	v := r.ReadUint()
	if r.err != nil {
		return Optional[uint64]{}
	}
	return Some(v)
}

// ReadOptionalString reads a BARE optional<string>.
func (r *Reader) ReadOptionalString() Optional[string] {
	if !r.ReadOptional() {
		return Optional[string]{}
	}
	s := r.ReadString()
	if r.err != nil {
		return Optional[string]{}
	}
	return Some(s)
}

// ReadArrayLen reads the count of a BARE array whose items are each at least minItemSize
// (>= 1) bytes long, and checks that the remaining input can hold that many items, so a
// caller may allocate count items safely.
func (r *Reader) ReadArrayLen(minItemSize int) int {
	if minItemSize < 1 {
		minItemSize = 1
	}
	return r.length("array count", minItemSize)
}

// ReadEnum reads a BARE enum or union tag (a uint) and checks that it is <= max.
func (r *Reader) ReadEnum(what string, max uint64) uint64 {
	start := r.off
	v := r.ReadUint()
	if r.err == nil && v > max {
		r.off = start
		r.Fail(fmt.Sprintf("unknown %s %d", what, v), nil)
		return 0
	}
	return v
}
