package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
)

// Local addresses on each device's node.
const (
	appAddress      = "app"      // the application: records what it receives
	listenerAddress = "listener" // B's secure channel listener
)

// Client settings for a demo on loopback: reconnect quickly after the flaky link resets.
var (
	backoff       = client.Backoff{Min: 10 * time.Millisecond, Max: 250 * time.Millisecond, Factor: 2, Jitter: 0.5}
	pubOptions    = []client.PublisherOption{client.WithBackoff(backoff), client.WithRequestTimeout(2 * time.Second)}
	consOptions   = []client.ConsumerOption{client.WithConsumerBackoff(backoff), client.WithPullWait(time.Second), client.WithConsumerRequestTimeout(2 * time.Second)}
	clientOptions = []client.Option{client.WithDialTimeout(2 * time.Second)}
)

// device is one of the two devices. Its identity lives in a key file; its node holds its
// workers and secure channels; its link to the hub (client, transport, subscription) exists
// only while it is online. Device A lives in the demo's process for the whole demo; device
// B is a separate process each time it is online (see deviceMain).
type device struct {
	name     string
	inbox    string // the stream this device reads
	clientID string // its identity for the saved index of its inbox
	keyFile  string
	id       *securechannel.Identity
	node     *routing.Node
	log      *slog.Logger
	app      *recorder

	// while online
	cli *client.Client
	tr  *bistream.Transport
	sub *bistream.Subscription
}

// keyFile returns the path of a device's identity file in dir.
func keyFile(dir, name string) string { return filepath.Join(dir, name, "identity.key") }

// sessionFile returns the path of a device's secure channel session file in dir.
func sessionFile(dir, name string) string { return filepath.Join(dir, name, "channel.session") }

// provision creates a device's identity file in dir/name (mode 0600) and returns the
// identity, as a device's provisioning would.
func provision(dir, name string) (*securechannel.Identity, error) {
	path := keyFile(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	id, err := securechannel.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	if err := securechannel.SaveIdentity(path, id, nil); err != nil {
		return nil, err
	}
	return id, nil
}

// newDevice boots a device whose identity file exists in dir/name: it loads the identity,
// as a device does at boot, and starts its node with an application worker.
func newDevice(name, dir string, log *slog.Logger) (*device, error) {
	d := &device{
		name:     name,
		inbox:    "inbox-" + name,
		clientID: "device-" + name,
		keyFile:  keyFile(dir, name),
		log:      log,
		app:      &recorder{},
	}
	var err error
	if d.id, err = securechannel.LoadIdentity(d.keyFile); err != nil {
		return nil, err
	}
	if d.node, err = routing.NewNode(routing.WithLogger(log)); err != nil {
		return nil, err
	}
	if err := d.node.Register(appAddress, routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		d.app.add(string(m.Payload))
		return nil
	})); err != nil {
		d.node.Close()
		return nil, err
	}
	return d, nil
}

// channelConfig is the device's secure channel configuration: its identity, and a trust
// policy that accepts exactly peer.
func (d *device) channelConfig(peer securechannel.PublicKey) securechannel.Config {
	return securechannel.Config{Identity: d.id, Trust: securechannel.TrustKeys(peer)}
}

// online connects the device to the hub at hubAddr and subscribes to its inbox, resuming
// from the index saved for its client_id.
func (d *device) online(hubAddr string) error {
	cli, err := client.Dial(hubAddr, append(clientOptions, client.WithLogger(d.log))...)
	if err != nil {
		return err
	}
	tr, err := bistream.New(d.node, cli,
		bistream.WithLogger(d.log),
		bistream.WithPublisherOptions(append(pubOptions, client.WithPublisherLogger(d.log))...),
		bistream.WithConsumerOptions(append(consOptions, client.WithConsumerLogger(d.log))...))
	if err != nil {
		cli.Close()
		return err
	}
	sub, err := tr.Subscribe(d.inbox, d.clientID)
	if err != nil {
		tr.Close()
		cli.Close()
		return err
	}
	d.cli, d.tr, d.sub = cli, tr, sub
	return nil
}

// route returns the route to the worker at addr on the peer's node, through the peer's
// inbox, with replies coming back through this device's inbox.
func (d *device) route(peerInbox, addr string) (wire.Route, error) {
	r, err := d.tr.Route(peerInbox, d.inbox)
	if err != nil {
		return nil, err
	}
	return append(r, wire.Local(addr)), nil
}

// offline stops the device's link to the hub completely: the subscription saves its
// position and stops, the publishers wait for their confirms and stop, the TCP connections
// close. It returns the subscription's position once it stopped (the next index to read),
// which its Close tried to save; the demo checks that the hub holds it.
func (d *device) offline() (uint64, error) {
	if d.tr == nil {
		return 0, nil
	}
	// The position once the subscription has stopped: a message still being handled (B's
	// listener answering message 1) moves it until then, and Close saves it.
	err := d.tr.Close()
	pos, _ := d.sub.Position()
	if cerr := d.cli.Close(); err == nil {
		err = cerr
	}
	d.cli, d.tr, d.sub = nil, nil, nil
	if err != nil {
		return 0, fmt.Errorf("%s offline: %w", d.name, err)
	}
	return pos, nil
}

// close takes the device offline and stops its node.
func (d *device) close() {
	_, _ = d.offline()
	_ = d.node.Close()
}

// recorder keeps what an application worker received, in order.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.msgs = append(r.msgs, s)
	r.mu.Unlock()
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// waitUntil polls cond until it is true or ctx ends.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
