package hub_test

// A tiny, independent BARE encoder/decoder used by the "plain Ockam client" test. It is
// written from the protocol text (Ockam routing v1 + stream protocol) and deliberately shares
// no code with core/wire, so the test proves byte compatibility rather than self-consistency.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

type bareW struct{ b []byte }

func (w *bareW) u8(v uint8) *bareW { w.b = append(w.b, v); return w }

func (w *bareW) uint(v uint64) *bareW {
	for v >= 0x80 {
		w.b = append(w.b, byte(v)|0x80)
		v >>= 7
	}
	w.b = append(w.b, byte(v))
	return w
}

func (w *bareW) data(d []byte) *bareW { w.uint(uint64(len(d))); w.b = append(w.b, d...); return w }
func (w *bareW) str(s string) *bareW  { return w.data([]byte(s)) }

func (w *bareW) optStr(s *string) *bareW {
	if s == nil {
		return w.u8(0)
	}
	return w.u8(1).str(*s)
}

type bareR struct {
	b   []byte
	err error
}

var errShort = errors.New("bare: short buffer")

func (r *bareR) u8() uint8 {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *bareR) uint() uint64 {
	var v uint64
	for shift := uint(0); shift < 70; shift += 7 {
		c := r.u8()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	r.err = errors.New("bare: varint too long")
	return 0
}

func (r *bareR) data() []byte {
	n := r.uint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errShort
		return nil
	}
	d := r.b[:n]
	r.b = r.b[n:]
	return d
}

func (r *bareR) str() string { return string(r.data()) }

func (r *bareR) optUint() (uint64, bool) {
	switch r.u8() {
	case 0:
		return 0, false
	case 1:
		return r.uint(), true
	default:
		r.err = errors.New("bare: bad optional flag")
		return 0, false
	}
}

// plainAddr is an Ockam routing address: type 0 = local, 1 = TCP.
type plainAddr struct {
	typ uint8
	val []byte
}

func (a plainAddr) String() string { return fmt.Sprintf("%d#%s", a.typ, a.val) }

func local(s string) plainAddr { return plainAddr{0, []byte(s)} }

func (w *bareW) route(r []plainAddr) *bareW {
	w.uint(uint64(len(r)))
	for _, a := range r {
		w.u8(a.typ).data(a.val)
	}
	return w
}

func (r *bareR) route() []plainAddr {
	n := r.uint()
	if n > 64 {
		r.err = errors.New("bare: route too long")
		return nil
	}
	var out []plainAddr
	for i := uint64(0); i < n && r.err == nil; i++ {
		t := r.u8()
		out = append(out, plainAddr{t, append([]byte(nil), r.data()...)})
	}
	return out
}

// plainMsg is a decoded transport message with its payload split into protocol and data.
type plainMsg struct {
	onward, ret []plainAddr
	protocol    string
	data        []byte
}

// encodeFrame builds one TCP frame: u16 big-endian length + TransportMessage v1 whose
// payload is BasePayload{protocol, data}.
func encodeFrame(onward, ret []plainAddr, protocol string, data []byte) []byte {
	payload := (&bareW{}).str(protocol).data(data).b
	tm := (&bareW{}).u8(1).route(onward).route(ret).data(payload).b
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(tm)))
	return append(frame, tm...)
}

func decodeTransport(b []byte) (plainMsg, error) {
	r := &bareR{b: b}
	if v := r.u8(); r.err == nil && v != 1 {
		return plainMsg{}, fmt.Errorf("version %d", v)
	}
	var m plainMsg
	m.onward = r.route()
	m.ret = r.route()
	p := &bareR{b: r.data()}
	if r.err != nil {
		return plainMsg{}, r.err
	}
	m.protocol = p.str()
	m.data = p.data()
	if p.err != nil {
		return plainMsg{}, p.err
	}
	return m, nil
}
