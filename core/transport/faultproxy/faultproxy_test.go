package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// echoServer accepts connections on loopback and echoes every byte back until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string, opts ...faultproxy.Option) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// expectDead dials addr and checks the connection is refused or reset.
func expectDead(t *testing.T, addr, what string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return // reset during the handshake: refused as well
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read on %s succeeded", what)
	}
}

func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestForwards(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("hello"))
	big := bytes.Repeat([]byte("0123456789"), 20000)
	roundTrip(t, c, big)
	// The counter is bumped after the write, so the echo can overtake it: poll.
	want := uint64(5 + len(big))
	for deadline := time.Now().Add(10 * time.Second); (p.Stats().BytesUp < want || p.Stats().BytesDown < want) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats(); st.Accepted != 1 || st.BytesUp != want || st.BytesDown != want {
		t.Fatalf("stats = %+v, want 1 accepted and %d bytes each way", st, want)
	}
}

func TestResetAll(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll reset %d connections, want 1", n)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after reset succeeded")
	}
	// The proxy still accepts new connections.
	roundTrip(t, dial(t, p.Addr()), []byte("again"))
}

func TestResetEvery(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithResetEvery(10*time.Millisecond))
	// A reset may even hit the handshake; otherwise the read blocks until the periodic
	// reset kills the connection (bounded by the test timeout).
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c.Close()
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("copy ended with %v, want a reset", err)
		}
	}
	if p.Stats().Resets == 0 {
		t.Fatal("Stats().Resets = 0 after a periodic reset")
	}
}

func TestRefuse(t *testing.T) {
	p := newProxy(t, echoServer(t))
	p.SetRefuse(true)
	expectDead(t, p.Addr(), "a refused connection")
	p.SetRefuse(false)
	roundTrip(t, dial(t, p.Addr()), []byte("back"))
	if p.Stats().Refused != 1 {
		t.Fatalf("Refused = %d, want 1", p.Stats().Refused)
	}
}

func TestPauseResume(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("a"))
	p.Pause()
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatalf("read %d bytes while paused", n)
	}
	_ = c.SetReadDeadline(time.Time{})
	p.Resume()
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after Resume read %q, %v; want \"held\"", got, err)
	}
}

func TestBlackhole(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("a"))
	p.SetBlackhole(true)
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	for p.Stats().Discarded < 4 {
		time.Sleep(time.Millisecond)
	}
	p.SetBlackhole(false)
	roundTrip(t, c, []byte("after")) // "lost" never arrives, only "after"
}

func TestMaxConns(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithMaxConns(1))
	c1 := dial(t, p.Addr())
	roundTrip(t, c1, []byte("1"))
	expectDead(t, p.Addr(), "a connection beyond MaxConns")
	roundTrip(t, c1, []byte("still"))
}

func TestDelayAndHalfClose(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithDelay(time.Millisecond))
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	p, err := faultproxy.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	p.Pause()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.Close()
		t.Fatal("dial after Close succeeded")
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]faultproxy.Option{
		"negative reset": faultproxy.WithResetEvery(-1),
		"negative delay": faultproxy.WithDelay(-1),
		"zero conns":     faultproxy.WithMaxConns(0),
		"zero dial":      faultproxy.WithDialTimeout(0),
		"empty listen":   faultproxy.WithListenAddr(""),
		"nil":            nil,
	} {
		if _, err := faultproxy.New("127.0.0.1:1", opt); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("%s: New error = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := faultproxy.New(""); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("empty target: error = %v, want ErrInvalidOption", err)
	}
}

// TestPauseDown checks that a pause of the target's direction lets requests through and
// holds the answers: the echo server receives what the client sends (its echo shows in
// BytesDown only after Resume, and a reset then loses it).
func TestPauseDown(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("a"))
	p.PauseDirection(faultproxy.Down)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	// The request reaches the target (BytesUp grows) while its echo is held.
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().BytesUp < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("BytesUp = %d after a Down pause, want 5: the request was held", p.Stats().BytesUp)
		}
		time.Sleep(time.Millisecond)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatalf("read %d bytes while the target's direction is paused", n)
	}
	_ = c.SetReadDeadline(time.Time{})
	if down := p.Stats().BytesDown; down != 1 {
		t.Fatalf("BytesDown = %d while paused, want 1", down)
	}
	p.Resume()
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after Resume read %q, %v; want \"held\"", got, err)
	}
}

// TestPauseUpOnly checks that a pause of the client's direction leaves the other one
// working, and that Pause and Resume stay paired with PauseDirection.
func TestPauseUpOnly(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("a"))
	p.PauseDirection(faultproxy.Up)
	p.PauseDirection(faultproxy.Up) // twice is once
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatalf("read %d bytes while the client's direction is paused", n)
	}
	_ = c.SetReadDeadline(time.Time{})
	if up := p.Stats().BytesUp; up != 1 {
		t.Fatalf("BytesUp = %d while paused, want 1", up)
	}
	p.Pause() // adds Down
	p.Resume()
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after Resume read %q, %v; want \"held\"", got, err)
	}
	roundTrip(t, c, []byte("b"))
}

// waitFor polls cond until it holds, failing the test with what after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// expectHeld checks that nothing arrives on c for a while (a read deadline, not a sleep).
func expectHeld(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatalf("read %d bytes %s", n, what)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// peerServer accepts connections on loopback and hands the test each accepted one, so
// that the test can make the target send on its own.
func peerServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), conns
}

// proxiedPair starts a proxy in front of a peer server and returns it, a client connected
// through it and the server's side of that connection, once a first byte went through.
func proxiedPair(t *testing.T) (p *faultproxy.Proxy, c, s net.Conn) {
	t.Helper()
	addr, conns := peerServer(t)
	p = newProxy(t, addr)
	c = dial(t, p.Addr())
	if _, err := c.Write([]byte("1")); err != nil {
		t.Fatal(err)
	}
	s = <-conns
	readExactly(t, s, "1")
	return p, c, s
}

func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestDialFailureCounted checks that a connection to a proxy whose target is down is reset,
// counted as refused, and does not stay active.
func TestDialFailureCounted(t *testing.T) {
	// Not a listener's port freed: the proxy could get it back as its own and connect to
	// itself, connection after connection.
	p := newProxy(t, hubtest.RefusedAddr(t))
	expectDead(t, p.Addr(), "a proxy whose target is down")
	waitFor(t, "the failed dial to be counted as refused", func() bool { return p.Stats().Refused == 1 })
	waitFor(t, "the failed pair to be removed", func() bool { return p.Stats().Active == 0 })
	if st := p.Stats(); st.Accepted != 1 || st.Resets != 0 {
		t.Fatalf("stats = %+v, want 1 accepted, 0 resets", st)
	}
}

// TestPauseAgainAfterResume checks that a pause after a Resume holds traffic again.
func TestPauseAgainAfterResume(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	p.Pause()
	p.Resume()
	roundTrip(t, c, []byte("a"))
	for _, d := range []faultproxy.Direction{faultproxy.Up, faultproxy.Down, faultproxy.Both} {
		p.PauseDirection(d)
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
		expectHeld(t, c, "while paused again after a Resume")
		p.Resume()
		readExactly(t, c, "held")
	}
}

// TestBlackholeBothDirections checks that a black hole discards what either side sends
// (and forwards none of it later), and that the connection works again afterwards.
func TestBlackholeBothDirections(t *testing.T) {
	p, c, s := proxiedPair(t)
	p.SetBlackhole(true)
	if _, err := c.Write([]byte("up!")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's bytes to be discarded", func() bool { return p.Stats().Discarded == 3 })
	if _, err := s.Write([]byte("down")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the target's bytes to be discarded", func() bool { return p.Stats().Discarded == 7 })
	p.SetBlackhole(false)
	if _, err := c.Write([]byte("C")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, s, "C")
	if _, err := s.Write([]byte("S")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, "S")
	waitFor(t, "the counters", func() bool { st := p.Stats(); return st.BytesUp == 2 && st.BytesDown == 1 })
}

// closeWithin closes p and fails the test if Close does not return in time.
func closeWithin(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s while a chunk was delayed")
	}
}

// TestDelayHoldsAndCloseInterrupts checks that a delay holds each chunk (an hour here, so
// nothing arrives) and that Close does not wait for it.
func TestDelayHoldsAndCloseInterrupts(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithDelay(time.Hour))
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	expectHeld(t, c, "through a proxy delaying every chunk by an hour")
	closeWithin(t, p)
	if st := p.Stats(); st.BytesDown != 0 {
		t.Fatalf("BytesDown = %d, want 0", st.BytesDown)
	}
}

// TestSetDelay checks that the delay can be changed while the proxy runs, and that a
// negative delay means none.
func TestSetDelay(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	p.SetDelay(-time.Second)
	roundTrip(t, c, []byte("fast"))
	p.SetDelay(time.Hour)
	if _, err := c.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	expectHeld(t, c, "after SetDelay(time.Hour)")
	closeWithin(t, p)
}

// TestZeroOptions checks that the zero values documented as defaults are valid.
func TestZeroOptions(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithResetEvery(0), faultproxy.WithDelay(0), faultproxy.WithMaxConns(1))
	roundTrip(t, dial(t, p.Addr()), []byte("ok"))
	if st := p.Stats(); st.Resets != 0 {
		t.Fatalf("Resets = %d with WithResetEvery(0)", st.Resets)
	}
}

// TestListenAddr checks that a proxy listens where WithListenAddr says: a bad address fails
// New, and a proxy restarts at the address of a closed one.
func TestListenAddr(t *testing.T) {
	target := echoServer(t)
	if p, err := faultproxy.New(target, faultproxy.WithListenAddr("127.0.0.1:notaport")); err == nil {
		p.Close()
		t.Fatal("New listened although WithListenAddr named no valid address")
	}
	p1, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	addr := p1.Addr()
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	p2 := newProxy(t, target, faultproxy.WithListenAddr(addr))
	if p2.Addr() != addr {
		t.Fatalf("Addr = %s, want %s", p2.Addr(), addr)
	}
	roundTrip(t, dial(t, addr), []byte("again"))
}

// TestActiveAndSlotFreed checks Stats().Active, and that a reset pair frees its slot under
// WithMaxConns.
func TestActiveAndSlotFreed(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithMaxConns(1))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("1"))
	if a := p.Stats().Active; a != 1 {
		t.Fatalf("Active = %d with one connection, want 1", a)
	}
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll = %d, want 1", n)
	}
	waitFor(t, "the reset pair to be removed", func() bool { return p.Stats().Active == 0 })
	roundTrip(t, dial(t, p.Addr()), []byte("2"))
}

// TestClientResetClosesTarget checks that when the client's side fails, the proxy closes
// its connection to the target too and removes the pair.
func TestClientResetClosesTarget(t *testing.T) {
	p, c, s := proxiedPair(t)
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("the target read data after the client reset")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the proxy kept its connection to the target open after the client reset")
	}
	waitFor(t, "the pair to be removed", func() bool { return p.Stats().Active == 0 })
}

// TestResetAllResetsTarget checks that ResetAll resets the target's side too: the target
// sees a TCP RST, not an orderly end.
func TestResetAllResetsTarget(t *testing.T) {
	p, c, s := proxiedPair(t)
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll = %d, want 1", n)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the target's read after ResetAll = %v, want a connection reset", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the client's read after ResetAll = %v, want a connection reset", err)
	}
}

// TestPauseHoldsHalfClose: a pause holds the end of a direction as it holds its bytes. The
// client's half-close, made while paused, reaches the echo server only after Resume; the
// server's close, echoed back as the client's EOF, comes after it.
func TestPauseHoldsHalfClose(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("a"))
	p.Pause()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while paused after the client's half-close: %d bytes, %v; want nothing (the half-close held)", n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	p.Resume()
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("after Resume ReadAll = %q, %v; want the server's close", got, err)
	}
}

// TestBlackholeHidesHalfClose: a side's half-close does not go through a black hole, as its
// bytes do not; the other side sees it once the black hole ends.
func TestBlackholeHidesHalfClose(t *testing.T) {
	p, c, s := proxiedPair(t)
	p.SetBlackhole(true)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("target's read in the black hole after the client's half-close: %d bytes, %v; want nothing", n, err)
	}
	_ = s.SetReadDeadline(time.Time{})
	p.SetBlackhole(false)
	if got, err := io.ReadAll(s); err != nil || len(got) != 0 {
		t.Fatalf("after the black hole ReadAll = %q, %v; want the client's half-close", got, err)
	}
	// The other direction still works: the half-close closed only the client's.
	if _, err := s.Write([]byte("S")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, "S")
}

// TestBlackholeHidesClose: a side that closes its connection in a black hole is not seen
// closing by the other, which can still send (its bytes discarded) until the black hole ends.
func TestBlackholeHidesClose(t *testing.T) {
	p, c, s := proxiedPair(t)
	p.SetBlackhole(true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client's read in the black hole after the target closed: %d bytes, %v; want nothing", n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("client's write in the black hole: %v", err)
	}
	waitFor(t, "the client's bytes to be discarded", func() bool { return p.Stats().Discarded == 4 })
	p.SetBlackhole(false)
	if got, err := io.ReadAll(c); len(got) != 0 {
		t.Fatalf("after the black hole ReadAll = %q, %v; want the target's close", got, err)
	}
}
