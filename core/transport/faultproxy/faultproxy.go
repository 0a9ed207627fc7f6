// Package faultproxy is a fault-injecting TCP proxy for tests and demos.
//
// A [Proxy] listens on a loopback address and forwards every accepted connection to a
// target address. While it runs, faults can be injected: reset every connection (now, or
// periodically), refuse new connections, pause forwarding in one direction or both (bytes
// are held, TCP flow control pushes back on the sender), black-hole traffic (bytes are read
// and silently discarded, as on a link that lost its route) and delay each forwarded chunk.
//
// The proxy is bounded: it holds at most MaxConns connection pairs (further connections are
// reset on accept) and one fixed-size buffer per direction and pair. Every goroutine it starts
// is stopped by [Proxy.Close].
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Defaults for the options.
const (
	DefaultMaxConns    = 256
	DefaultDialTimeout = 5 * time.Second
	bufSize            = 32 << 10
)

type config struct {
	listen      string
	resetEvery  time.Duration
	delay       time.Duration
	maxConns    int
	dialTimeout time.Duration
}

// Option configures a [Proxy]; options are validated by [New] and an invalid one returns an
// error matching [core.ErrInvalidOption].
type Option func(*config) error

// WithListenAddr sets the address to listen on (default "127.0.0.1:0", a free port). Use a
// fixed port to restart a proxy at the same address.
func WithListenAddr(addr string) Option {
	return func(c *config) error {
		if addr == "" {
			return fmt.Errorf("%w: faultproxy: empty listen address", core.ErrInvalidOption)
		}
		c.listen = addr
		return nil
	}
}

// WithResetEvery makes the proxy reset (TCP RST) every open connection each d. Zero (the
// default) disables periodic resets; [Proxy.ResetAll] still works.
func WithResetEvery(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: faultproxy: negative reset period %v", core.ErrInvalidOption, d)
		}
		c.resetEvery = d
		return nil
	}
}

// WithDelay delays every forwarded chunk by d before it is written (default 0). The delay is
// per chunk, so it also lowers the throughput of a busy connection.
func WithDelay(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: faultproxy: negative delay %v", core.ErrInvalidOption, d)
		}
		c.delay = d
		return nil
	}
}

// WithMaxConns bounds the number of connection pairs open at once (default
// DefaultMaxConns); a connection accepted beyond the bound is reset immediately.
func WithMaxConns(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: faultproxy: max connections %d, want >= 1", core.ErrInvalidOption, n)
		}
		c.maxConns = n
		return nil
	}
}

// WithDialTimeout bounds how long the proxy waits to connect to the target (default
// DefaultDialTimeout); on failure the accepted connection is reset.
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: faultproxy: dial timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		c.dialTimeout = d
		return nil
	}
}

// Stats counts what the proxy did since it started.
type Stats struct {
	Accepted  uint64 // connections accepted
	Active    int    // connection pairs open now
	Resets    uint64 // connection pairs reset by a fault (ResetAll, periodic reset, refuse)
	Refused   uint64 // accepted connections reset at once (refusing, bound reached, dial failed)
	BytesUp   uint64 // bytes forwarded client -> target
	BytesDown uint64 // bytes forwarded target -> client
	Discarded uint64 // bytes discarded while black-holed
}

// Proxy is a running fault-injecting proxy. Its methods are safe for concurrent use.
type Proxy struct {
	cfg    config
	target string
	ln     net.Listener
	done   chan struct{}
	ctx    context.Context // ends with Close: cuts short the dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	links     map[*link]struct{}
	gates     [2]chan struct{} // by direction (Up, Down): closed while forwarding is allowed; replaced by Pause
	paused    Direction
	refusing  bool
	closed    bool
	blackhole atomic.Bool
	lit       chan struct{} // closed while the black hole is off; replaced by SetBlackhole(true)
	delay     atomic.Int64

	accepted, resets, refused, up, down, discarded atomic.Uint64
}

// New starts a proxy that forwards connections to target ("host:port").
func New(target string, opts ...Option) (*Proxy, error) {
	cfg := config{listen: "127.0.0.1:0", maxConns: DefaultMaxConns, dialTimeout: DefaultDialTimeout}
	if target == "" {
		return nil, fmt.Errorf("%w: faultproxy: empty target address", core.ErrInvalidOption)
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: faultproxy: nil option", core.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", cfg.listen, err)
	}
	p := &Proxy{
		cfg:    cfg,
		target: target,
		ln:     ln,
		done:   make(chan struct{}),
		links:  map[*link]struct{}{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for i := range p.gates {
		p.gates[i] = make(chan struct{})
		close(p.gates[i])
	}
	p.lit = make(chan struct{})
	close(p.lit)
	p.delay.Store(int64(cfg.delay))
	p.wg.Add(1)
	go p.acceptLoop()
	if cfg.resetEvery > 0 {
		p.wg.Add(1)
		go p.resetLoop(cfg.resetEvery)
	}
	return p, nil
}

// Addr returns the address the proxy listens on ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// ResetAll resets every open connection pair (both sides see a TCP RST) and returns how many
// pairs it reset. New connections are still accepted.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	p.resets.Add(uint64(len(ls)))
	for _, l := range ls {
		l.reset()
	}
	return len(ls)
}

// SetRefuse makes the proxy reset every new connection right after accepting it (on), as if
// the target were down, or accept them again (off). Open connections are not affected.
func (p *Proxy) SetRefuse(on bool) {
	p.mu.Lock()
	p.refusing = on
	p.mu.Unlock()
}

// Direction is a set of the two directions of a proxied connection.
type Direction uint8

// The directions.
const (
	Up   Direction   = 1 << iota // client to target
	Down                         // target to client
	Both = Up | Down             // both directions
)

// index returns the gate of a single direction.
func (d Direction) index() int {
	if d == Down {
		return 1
	}
	return 0
}

// Pause stops forwarding: bytes already read are held, and so is a half-close, and nothing
// more is written in either direction until [Proxy.Resume]; new connections are accepted
// and held too. It is PauseDirection(Both).
func (p *Proxy) Pause() { p.PauseDirection(Both) }

// PauseDirection stops forwarding in the directions d only, as [Proxy.Pause] does in both.
// With Down, what clients send still reaches the target but its answers are held: a request
// is carried out and its reply is lost if the connection is then reset, which is how a
// client's retry produces a duplicate.
func (p *Proxy) PauseDirection(d Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, one := range []Direction{Up, Down} {
		if d&one != 0 && p.paused&one == 0 {
			p.paused |= one
			p.gates[one.index()] = make(chan struct{})
		}
	}
}

// Resume ends [Proxy.Pause] and [Proxy.PauseDirection] in both directions.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, one := range []Direction{Up, Down} {
		if p.paused&one != 0 {
			close(p.gates[one.index()])
		}
	}
	p.paused = 0
}

// SetBlackhole makes the proxy read and silently discard all traffic in both directions (on)
// or forward it again (off). Connections stay open, so peers only notice by timing out: a
// side's half-close or close (or a reset) reaches the other side only once the black hole
// is off, as TCP would send its FIN again then.
// Bytes are dropped in whatever chunks they were read, so a framed protocol usually loses
// its framing on that connection (as behind a middlebox that loses data): use it to test
// timeouts and connection replacement, and Pause to hold traffic without losing any.
func (p *Proxy) SetBlackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blackhole.Load() == on {
		return
	}
	p.blackhole.Store(on)
	if on {
		p.lit = make(chan struct{})
	} else {
		close(p.lit)
	}
}

// SetDelay changes the per-chunk delay (see [WithDelay]); a negative d is treated as 0.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(max(d, 0))) }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:  p.accepted.Load(),
		Active:    active,
		Resets:    p.resets.Load(),
		Refused:   p.refused.Load(),
		BytesUp:   p.up.Load(),
		BytesDown: p.down.Load(),
		Discarded: p.discarded.Load(),
	}
}

// Close stops the proxy: it closes the listener, resets every connection and waits for all
// of its goroutines to return. A second Close returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.cancel()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range ls {
		l.reset()
	}
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var tempDelay time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary accept error (EMFILE, ...): back off a little, as net/http does.
			tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(tempDelay):
			case <-p.done:
				return
			}
			continue
		}
		tempDelay = 0
		p.accepted.Add(1)
		p.mu.Lock()
		refuse := p.refusing || p.closed || len(p.links) >= p.cfg.maxConns
		var l *link
		if !refuse {
			l = newLink(c)
			p.links[l] = struct{}{}
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			resetConn(c)
			continue
		}
		go p.serve(l)
	}
}

func (p *Proxy) resetLoop(every time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.ResetAll()
		}
	}
}

// serve dials the target for l and pumps bytes both ways until either side fails or the
// link is reset.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.remove(l)
	d := net.Dialer{Timeout: p.cfg.dialTimeout}
	t, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.refused.Add(1)
		l.reset()
		return
	}
	if !l.setTarget(t) { // reset while dialing
		resetConn(t)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(l, Up, t, l.client, &p.up) }()
	go func() { defer wg.Done(); p.pump(l, Down, l.client, t, &p.down) }()
	wg.Wait()
	l.close()
}

func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pump copies src to dst chunk by chunk, honouring pause, black-hole and delay. When src
// reaches EOF it half-closes dst and lets the other direction run; on any other end it closes
// the whole link so that the other pump stops too. Either waits for the black hole to end.
func (p *Proxy) pump(l *link, dir Direction, dst, src net.Conn, count *atomic.Uint64) {
	halfClosed := false
	defer func() {
		if !halfClosed {
			l.close()
		}
	}()
	buf := make([]byte, bufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(l, dir) {
				return
			}
			if p.blackhole.Load() {
				p.discarded.Add(uint64(n))
			} else {
				if d := time.Duration(p.delay.Load()); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-t.C:
					case <-p.done:
						t.Stop()
						return
					case <-l.gone: // reset or closed: the chunk has nowhere to go
						t.Stop()
						return
					}
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
				count.Add(uint64(n))
			}
		}
		if err != nil {
			// The end of a direction goes through the black hole no more than its bytes:
			// the peer learns of it when the black hole ends.
			if !p.waitLit(l) {
				return
			}
			if errors.Is(err, io.EOF) {
				// Half-close: pass the EOF on, keep the other direction running. A pause
				// holds it as it holds bytes: the peer would otherwise see the end of a
				// direction that is paused.
				if !p.wait(l, dir) {
					return
				}
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					halfClosed = cw.CloseWrite() == nil
					return
				}
			}
			return
		}
	}
}

// waitLit blocks while the proxy is a black hole; it returns false when the proxy is closing
// or l was reset or closed meanwhile.
func (p *Proxy) waitLit(l *link) bool {
	p.mu.Lock()
	g := p.lit
	p.mu.Unlock()
	return p.await(l, g)
}

// wait blocks while the proxy is paused in direction dir; it returns false when the proxy is
// closing or l was reset or closed meanwhile.
func (p *Proxy) wait(l *link, dir Direction) bool {
	p.mu.Lock()
	g := p.gates[dir.index()]
	p.mu.Unlock()
	return p.await(l, g)
}

// await blocks until gate is closed; it returns false when the proxy is closing or l was
// reset or closed meanwhile.
func (p *Proxy) await(l *link, gate <-chan struct{}) bool {
	select {
	case <-gate:
		return true
	case <-p.done:
		return false
	case <-l.gone:
		return false
	}
}

// link is one proxied connection pair.
type link struct {
	mu     sync.Mutex
	client net.Conn
	target net.Conn
	dead   bool
	gone   chan struct{} // closed when dead becomes true
}

func newLink(c net.Conn) *link { return &link{client: c, gone: make(chan struct{})} }

// kill marks l dead; l.mu is held.
func (l *link) kill() {
	if !l.dead {
		l.dead = true
		close(l.gone)
	}
}

func (l *link) setTarget(t net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return false
	}
	l.target = t
	return true
}

// reset closes both sides with SO_LINGER 0, so both peers see a TCP RST.
func (l *link) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kill()
	resetConn(l.client)
	if l.target != nil {
		resetConn(l.target)
	}
}

// close closes both sides (orderly).
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kill()
	_ = l.client.Close()
	if l.target != nil {
		_ = l.target.Close()
	}
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
