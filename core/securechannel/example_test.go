package securechannel_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
)

// The transport-independent core: run the three handshake messages by hand, then seal and
// open messages in any order.
func ExampleHandshake() {
	alice, _ := securechannel.GenerateIdentity()
	bob, _ := securechannel.GenerateIdentity()
	ini, _ := securechannel.NewInitiator(securechannel.Config{Identity: alice, Trust: securechannel.TrustKeys(bob.PublicKey())})
	res, _ := securechannel.NewResponder(securechannel.Config{Identity: bob, Trust: securechannel.TrustKeys(alice.PublicKey())})

	m1, _ := ini.WriteMessage()
	_ = res.ReadMessage(m1)
	m2, _ := res.WriteMessage()
	if err := ini.ReadMessage(m2); err != nil { // alice checks bob's key here
		log.Fatal(err)
	}
	m3, _ := ini.WriteMessage()
	if err := res.ReadMessage(m3); err != nil { // bob checks alice's key here
		log.Fatal(err)
	}
	a, _ := ini.Channel()
	b, _ := res.Channel()

	first, _ := a.Seal([]byte("first"))
	second, _ := a.Seal([]byte("second"))
	for _, m := range [][]byte{second, first, second} { // reordered and duplicated
		pt, err := b.Open(m)
		fmt.Printf("%q %v\n", pt, err)
	}
	fmt.Println(b.PeerIdentity() == alice.PublicKey())
	// Output:
	// "second" <nil>
	// "first" <nil>
	// "" securechannel: duplicate message: epoch 0 nonce 1
	// true
}

// The routing layer: a listener and an echo service on one node, and a channel dialled to
// the listener's route. Over TCP or a hub the route is longer; nothing else changes.
func ExampleDial() {
	node, err := routing.NewNode()
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	alice, _ := securechannel.GenerateIdentity()
	bob, _ := securechannel.GenerateIdentity()

	l, err := securechannel.Listen(node, "secure", securechannel.Config{Identity: bob, Trust: securechannel.TrustKeys(alice.PublicKey())}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	_ = node.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		sc, _ := l.Channel(m.ReturnRoute[0]) // the channel this came through
		fmt.Println("from alice:", sc.PeerIdentity() == alice.PublicKey())
		return m.Reply(ctx, m.Payload)
	}))
	replies := make(chan []byte, 1)
	_ = node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		replies <- m.Payload
		return nil
	}))

	sc, err := securechannel.Dial(context.Background(), node, wire.Route{wire.Local("secure")},
		securechannel.Config{Identity: alice, Trust: securechannel.TrustKeys(bob.PublicKey())})
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	err = node.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{sc.Address(), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     []byte("ping"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("reply: %s\n", <-replies)
	// Output:
	// from alice: true
	// reply: ping
}

// A channel that survives a restart: save its state (sealed under the identity), drop it,
// restore it. The restored channel reserves new send nonces before it seals, and still
// rejects what it had opened.
func ExampleUnmarshalChannel() {
	alice, _ := securechannel.GenerateIdentity()
	bob, _ := securechannel.GenerateIdentity()
	ini, _ := securechannel.NewInitiator(securechannel.Config{Identity: alice, Trust: securechannel.TrustKeys(bob.PublicKey())})
	res, _ := securechannel.NewResponder(securechannel.Config{Identity: bob, Trust: securechannel.TrustKeys(alice.PublicKey())})
	m1, _ := ini.WriteMessage()
	_ = res.ReadMessage(m1)
	m2, _ := res.WriteMessage()
	_ = ini.ReadMessage(m2)
	m3, _ := ini.WriteMessage()
	_ = res.ReadMessage(m3)
	a, _ := ini.Channel()
	b, _ := res.Channel()

	old, _ := a.Seal([]byte("before the restart"))
	_, _ = b.Open(old)
	state, _ := b.MarshalBinary()
	file, _ := securechannel.SealSession(bob, state) // what SecureChannel.SaveSession writes

	// Bob's process restarts.
	state, err := securechannel.OpenSession(bob, file)
	if err != nil {
		log.Fatal(err)
	}
	b2, _ := securechannel.UnmarshalChannel(state)
	_, err = b2.Open(old)
	fmt.Println(err)
	_, err = b2.Seal([]byte("reply"))
	fmt.Println(err)
	_, _ = b2.MarshalBinary() // store it, then seal
	reply, _ := b2.Seal([]byte("reply"))
	pt, _ := a.Open(reply)
	fmt.Printf("%q\n", pt)
	// Output:
	// securechannel: duplicate message: epoch 0 nonce 0
	// securechannel: reserved send nonces used up, save the session state again: epoch 0 nonce 1024
	// "reply"
}
