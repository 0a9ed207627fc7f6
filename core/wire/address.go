package wire

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Address types of Ockam routing v1.
const (
	// AddressLocal is a worker address on the node that holds the message.
	AddressLocal uint8 = 0
	// AddressTCP is a TCP "host:port"; the node's TCP transport connects to it.
	AddressTCP uint8 = 1
)

// Address is one hop of a route: a type and an opaque value. Local addresses hold a worker
// name, TCP addresses a "host:port".
type Address struct {
	Type  uint8
	Value []byte
}

// Local returns the local address name.
func Local(name string) Address { return Address{Type: AddressLocal, Value: []byte(name)} }

// TCP returns the TCP address hostport ("host:port").
func TCP(hostport string) Address { return Address{Type: AddressTCP, Value: []byte(hostport)} }

// Equal reports whether a and b have the same type and value.
func (a Address) Equal(b Address) bool { return a.Type == b.Type && bytes.Equal(a.Value, b.Value) }

// String formats a as "type#value", e.g. "0#stream" or "1#127.0.0.1:4000" (Ockam's format).
func (a Address) String() string { return strconv.Itoa(int(a.Type)) + "#" + string(a.Value) }

// Clone returns a copy of a that does not alias a.Value.
func (a Address) Clone() Address {
	return Address{Type: a.Type, Value: bytes.Clone(a.Value)}
}

// Size returns the encoded size of a.
func (a Address) Size() int { return UintSize(uint64(a.Type)) + DataSize(len(a.Value)) }

// Append appends the BARE encoding of a: type, value data. The type is written as a BARE
// uint, as Ockam's Elixir implementation does; for the types in use (below 128) that is the
// same single byte as a u8.
func (a Address) Append(dst []byte) []byte {
	return AppendData(AppendUint(dst, uint64(a.Type)), a.Value)
}

// ParseAddress parses "type#value" (see Address.String). A string without '#' is a local
// address.
func ParseAddress(s string) (Address, error) {
	t, v, ok := strings.Cut(s, "#")
	if !ok {
		if s == "" {
			return Address{}, fmt.Errorf("wire: parse address: empty address")
		}
		return Local(s), nil
	}
	n, err := strconv.ParseUint(t, 10, 8)
	if err != nil {
		return Address{}, fmt.Errorf("wire: parse address %q: type %q is not a number 0-255", s, t)
	}
	if v == "" {
		return Address{}, fmt.Errorf("wire: parse address %q: empty value", s)
	}
	return Address{Type: uint8(n), Value: []byte(v)}, nil
}

// Route is an ordered list of addresses. The first address is the next hop.
type Route []Address

// MaxRouteLen is the largest number of addresses a route may hold on the wire. Decoders
// refuse a longer route with an error matching [ErrMalformed] and [ErrRouteTooLong];
// [AppendFrame] and [TransportMessage.Validate] refuse to send one.
//
// Real routes are short: a device's route to a stream worker through a hub has 2 or 3
// addresses, and every node a message crosses adds about 2 to its return route (the
// connection it arrived on and the forwarder), so 256 leaves room for a hundred nodes, far
// more than any deployment chains. The cap bounds what a frame can make a decoder allocate:
// without it, a 64 KiB frame holds about 32,000 two-byte addresses, which decode into about
// 1 MiB of Address values (16 times the frame); with it, a route costs at most 8 KiB.
const MaxRouteLen = 256

// Size returns the encoded size of r.
func (r Route) Size() int {
	n := UintSize(uint64(len(r)))
	for _, a := range r {
		n += a.Size()
	}
	return n
}

// Append appends the BARE encoding of r: uint count, then each address.
func (r Route) Append(dst []byte) []byte {
	dst = AppendUint(dst, uint64(len(r)))
	for _, a := range r {
		dst = a.Append(dst)
	}
	return dst
}

// Equal reports whether r and o hold equal addresses in the same order.
func (r Route) Equal(o Route) bool {
	if len(r) != len(o) {
		return false
	}
	for i := range r {
		if !r[i].Equal(o[i]) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of r.
func (r Route) Clone() Route {
	if r == nil {
		return nil
	}
	c := make(Route, len(r))
	for i, a := range r {
		c[i] = a.Clone()
	}
	return c
}

// Prepend returns a new route a + r; r is not modified.
func (r Route) Prepend(a Address) Route {
	c := make(Route, 0, len(r)+1)
	return append(append(c, a), r...)
}

// String formats r as "0#a => 1#host:port => ...".
func (r Route) String() string {
	var b strings.Builder
	for i, a := range r {
		if i > 0 {
			b.WriteString(" => ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// ParseRoute parses addresses separated by ';' or " => ", e.g.
// "1#127.0.0.1:4000;0#stream". See ParseAddress.
func ParseRoute(s string) (Route, error) {
	s = strings.ReplaceAll(s, "=>", ";")
	var r Route
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		a, err := ParseAddress(part)
		if err != nil {
			return nil, err
		}
		r = append(r, a)
	}
	return r, nil
}

// readAddress reads an Address. Value aliases the input.
func (r *Reader) readAddress() Address {
	start := r.off
	t := r.ReadUint()
	if r.err == nil && t > 255 {
		r.off = start
		r.Fail(fmt.Sprintf("address type %d is above 255", t), nil)
	}
	v := r.ReadData()
	return Address{Type: uint8(t), Value: v}
}

// readRoute reads a Route. Address values alias the input.
func (r *Reader) readRoute() Route {
	// An address is at least 2 bytes: type + zero length.
	start := r.off
	n := r.ReadArrayLen(2)
	if r.err != nil {
		return nil
	}
	if n > MaxRouteLen {
		r.off = start
		r.Fail(fmt.Sprintf("route of %d addresses exceeds the limit of %d (MaxRouteLen)", n, MaxRouteLen), ErrRouteTooLong)
		return nil
	}
	route := make(Route, n)
	for i := range route {
		route[i] = r.readAddress()
	}
	if r.err != nil {
		return nil
	}
	return route
}

// DecodeRoute decodes a BARE-encoded Route. Address values alias b. A route of more than
// MaxRouteLen addresses returns an error matching ErrMalformed and ErrRouteTooLong.
func DecodeRoute(b []byte) (Route, error) {
	r := NewReader(b, "Route")
	route := r.readRoute()
	return route, r.Finish()
}
