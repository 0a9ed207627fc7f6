package bistream

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

func sampleEnvelope() Envelope {
	return Envelope{
		ReturnStream: "inbox-a",
		Message: wire.TransportMessage{
			OnwardRoute: wire.Route{wire.Local("listener")},
			ReturnRoute: wire.Route{wire.Local("0123abcd")},
			Payload:     []byte("hello"),
		},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []Envelope{
		sampleEnvelope(),
		{Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}},
	} {
		b := e.Append(nil)
		if len(b) != e.Size() {
			t.Fatalf("Size %d, Append wrote %d bytes", e.Size(), len(b))
		}
		got, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.ReturnStream != e.ReturnStream || !got.Message.OnwardRoute.Equal(e.Message.OnwardRoute) ||
			!got.Message.ReturnRoute.Equal(e.Message.ReturnRoute) || !bytes.Equal(got.Message.Payload, e.Message.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
		if again := got.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", again, b)
		}
	}
}

func TestEnvelopeLayout(t *testing.T) {
	e := Envelope{ReturnStream: "r", Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}}
	inner := e.Message.Append(nil)
	want := append([]byte{1, 1, 1, 'r', byte(len(inner))}, inner...)
	if got := e.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got % x\nwant % x", got, want)
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	good := sampleEnvelope().Append(nil)
	inner := sampleEnvelope().Message.Append(nil)
	noOnward := wire.TransportMessage{ReturnRoute: wire.Route{wire.Local("x")}}.Append(nil)
	cases := map[string][]byte{
		"empty":            {},
		"version 2":        append([]byte{2}, good[1:]...),
		"truncated":        good[:len(good)-1],
		"trailing byte":    append(append([]byte(nil), good...), 0),
		"bad optional":     append([]byte{1, 7}, good[2:]...),
		"bad stream name":  append([]byte{1, 1, 3, 'a', '/', 'b', byte(len(inner))}, inner...),
		"empty stream":     append([]byte{1, 1, 0, byte(len(inner))}, inner...),
		"inner not a msg":  {1, 0, 3, 9, 9, 9},
		"no onward route":  append([]byte{1, 0, byte(len(noOnward))}, noOnward...),
		"inner length big": {1, 0, 0x7f, 1},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeEnvelope(b); !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("DecodeEnvelope(% x) = %v, want ErrMalformed", b, err)
			}
		})
	}
}

func TestEnvelopeValidate(t *testing.T) {
	if err := sampleEnvelope().Validate(); err != nil {
		t.Fatal(err)
	}
	e := sampleEnvelope()
	e.ReturnStream = "no spaces"
	if err := e.Validate(); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("bad return stream: %v", err)
	}
	e = sampleEnvelope()
	e.Message.OnwardRoute = nil
	if err := e.Validate(); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("empty onward route: %v", err)
	}
	e = sampleEnvelope()
	e.Message.ReturnRoute = make(wire.Route, wire.MaxRouteLen+1)
	if err := e.Validate(); !errors.Is(err, wire.ErrRouteTooLong) || !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("return route of %d addresses: %v, want wire.ErrRouteTooLong", len(e.Message.ReturnRoute), err)
	}
}
