package securechannel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

func identityFile(id *Identity) []byte { // what SaveIdentity writes
	return fmt.Appendf([]byte(identityHeader), "private-key: %x\npublic-key: %s\n", id.private[:], id.public)
}

// FuzzParseIdentity: parseIdentity (LoadIdentity's parser) never panics, and an identity it
// accepts is named in the file and reads back the same from its saved form.
func FuzzParseIdentity(f *testing.F) {
	good := identityFile(fixedIdentity(f, 1))
	for _, s := range [][]byte{good, bytes.ToUpper(good), bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")),
		append(bytes.Clone(good), good...), good[len(identityHeader):], []byte("private-key: \npublic-key: \n")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := parseIdentity(data)
		if err != nil {
			return
		}
		if !bytes.Contains(bytes.ToLower(data), []byte(id.public.String())) {
			t.Fatalf("accepted identity %s is not named in the file", id.public)
		}
		if again, err := parseIdentity(identityFile(id)); err != nil || again.private != id.private {
			t.Fatalf("saved form reads back as %v, %v", again, err)
		}
	})
}

// FuzzOpenSession: OpenSession (RestoreSession's reader) never panics, errors match
// ErrSessionCorrupt, and only genuine seals open (SealSession's salt is random, so each
// fuzzing process seals its own seeds).
func FuzzOpenSession(f *testing.F) {
	id := fixedIdentity(f, 1)
	genuine, states := map[string]string{}, map[string]bool{}
	for _, st := range []string{"", "state", string(bytes.Repeat([]byte{7}, 300))} {
		sealed, err := SealSession(id, []byte(st))
		if err != nil {
			f.Fatal(err)
		}
		genuine[string(sealed)], states[st] = st, true
		f.Add(sealed)
		f.Add(sealed[:len(sealed)-1])
	}
	other, _ := SealSession(fixedIdentity(f, 2), []byte("state"))
	f.Add(other)
	f.Fuzz(func(t *testing.T, sealed []byte) {
		state, err := OpenSession(id, sealed)
		want, ok := genuine[string(sealed)]
		switch {
		case err != nil && (!errors.Is(err, ErrSessionCorrupt) || ok):
			t.Fatalf("OpenSession: %v (genuine %v)", err, ok)
		case err == nil && (!states[string(state)] || ok && string(state) != want):
			t.Fatalf("forged session opened: % x -> %q", sealed, state)
		}
	})
}

type countSender struct{ n *atomic.Int64 }

func (s countSender) Send(context.Context, wire.TransportMessage) error { s.n.Add(1); return nil }

// FuzzNetworkInput sends arbitrary payloads through a routing node to the network-facing
// addresses of an established XX pair (listener, responder, initiator): nothing panics,
// nothing reaches the application, and the channel then delivers a genuine message once.
func FuzzNetworkInput(f *testing.F) {
	ini, _ := fixedHandshakes(f)
	m1, _ := ini.WriteMessage()
	f.Add(uint8(0), m1)
	f.Add(uint8(1), append(appendHeader(nil, Header{}), make([]byte, TagSize)...))
	f.Add(uint8(2), []byte{byte(TypeHandshake2)})
	f.Fuzz(func(t *testing.T, target uint8, payload []byte) {
		ctx := context.Background()
		node, err := routing.NewNode()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		var delivered, answers atomic.Int64
		_ = node.RegisterSender("app", countSender{&delivered})
		_ = node.RegisterSender("sink", countSender{&answers}) // handshake answers
		l, err := Listen(node, "listener", Config{Identity: fixedIdentity(t, 2), Trust: TrustAnyInsecure()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Dial(ctx, node, wire.Route{wire.Local("listener")}, Config{Identity: fixedIdentity(t, 1), Trust: TrustAnyInsecure()})
		if err != nil || len(l.Channels()) != 1 {
			t.Fatal(err, len(l.Channels()))
		}
		to := []wire.Route{{wire.Local("listener")}, c.PeerRoute(), l.Channels()[0].PeerRoute()}[target%3]
		_ = node.Send(ctx, wire.TransportMessage{OnwardRoute: to, ReturnRoute: wire.Route{wire.Local("sink")}, Payload: payload})
		if n := delivered.Load(); n != 0 {
			t.Fatalf("%d forged message(s) delivered", n)
		}
		if err := node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{c.Address(), wire.Local("app")}, Payload: []byte("x")}); err != nil || delivered.Load() != 1 {
			t.Fatalf("genuine message after % x to %v: %v, delivered %d", payload, to, err, delivered.Load())
		}
	})
}
