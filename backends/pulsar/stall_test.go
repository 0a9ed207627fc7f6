package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
)

// stallProxy forwards TCP connections to a broker's binary port. While it is stalled, it
// accepts connections but neither reads from them nor dials the broker, like a broker that
// stopped answering (what the client sends waits in the socket buffers); resume connects
// them and forwards as usual from then on.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	resumed chan struct{} // closed by resume
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, resumed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.resumed = make(chan struct{})
	p.mu.Unlock()
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	if p.stalled {
		p.stalled = false
		close(p.resumed)
	}
	p.mu.Unlock()
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		resumed := p.resumed
		if !p.stalled {
			resumed = nil
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if resumed != nil {
				<-resumed // closed by resume, or by close
			}
			b, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); b.Close() }()
			_, _ = io.Copy(c, b)
			c.Close()
		}()
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.resume()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// creationGoroutines returns the stacks of the goroutines inside pulsar-client-go's
// CreateProducer or CreateReader.
func creationGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pulsar.(*client).CreateProducer") || strings.Contains(g, "pulsar.(*client).CreateReader") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseDoesNotWaitForStalledCreation: a Store on a broker that stops answering its
// binary protocol (a stalled proxy; the admin API still answers) with a client whose
// operation timeout is an hour, so that the client's calls that take no context, creating
// a producer (for an Append) or a reader (for a Fetch), never return on their own. The
// call gives up when its ctx ends; a DeleteStream must then end with its ctx too, and Close
// must return, although the creation still waits. Close used to wait for it (up to the
// client's operation timeout: here an hour), and DeleteStream waited for the producer's
// creation whatever its ctx. Once the broker answers again, the abandoned creation must end
// (closing what it created). The waits are guards against those hangs, not timing asserts.
func TestCloseDoesNotWaitForStalledCreation(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, s *Store, stream string) error
	}{
		{"append", func(ctx context.Context, s *Store, stream string) error {
			_, err := s.Append(ctx, stream, 0, [][]byte{[]byte("m")})
			return err
		}},
		{"fetch", func(ctx context.Context, s *Store, stream string) error {
			_, err := s.Fetch(ctx, stream, 0, 0, 10)
			return err
		}},
	} {
		for _, del := range []bool{false, true} {
			name := tc.name
			if del {
				name += " then delete"
			}
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				b := broker(t)
				u, err := url.Parse(b.URL)
				if err != nil {
					t.Fatal(err)
				}
				proxy := newStallProxy(t, u.Host)
				client, err := pulsar.NewClient(pulsar.ClientOptions{
					URL:               "pulsar://" + proxy.addr(),
					OperationTimeout:  time.Hour,
					KeepAliveInterval: time.Hour, // also the deadline of the connection handshake
					Logger:            pulsarlog.DefaultNopLogger(),
				})
				if err != nil {
					t.Fatal(err)
				}
				s, err := New(ctx, client, b.AdminURL, &Options{TopicPrefix: "stall-"})
				if err != nil {
					t.Fatal(err)
				}
				rb := make([]byte, 4)
				_, _ = rand.Read(rb)
				stream := "stall-" + hex.EncodeToString(rb)
				if _, err := s.CreateStream(ctx, stream, 1); err != nil { // admin API only
					t.Fatal(err)
				}
				closed := false
				t.Cleanup(func() {
					// Let the abandoned creation end, then close what the test made. A
					// pre-fix Close still blocked is left behind.
					proxy.resume()
					if !closed {
						s.Close()
					}
					client.Close()
					if a, err := openStore(t, context.Background(), "prefix=stall-"); err == nil {
						_ = a.DeleteStream(context.Background(), stream)
						a.Close()
					}
				})
				proxy.stall()

				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				err = tc.call(cctx, s, stream)
				ccancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s on a stalled broker = %v; want its ctx's deadline", tc.name, err)
				}
				if len(creationGoroutines()) == 0 {
					t.Fatalf("no creation waits for the stalled broker: the test no longer tests what it says")
				}
				if del {
					// The stream's producer or reader is still being created: DeleteStream
					// must not wait for it beyond its ctx.
					dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
					ended := make(chan error, 1)
					go func() { ended <- s.DeleteStream(dctx, stream) }()
					select {
					case err := <-ended:
						t.Logf("DeleteStream while the creation waits: %v", err)
					case <-time.After(time.Minute):
						dcancel()
						t.Fatalf("DeleteStream has not returned a minute after it started, its ctx ended after 5s (goroutines creating: %d)", len(creationGoroutines()))
					}
					dcancel()
				}
				done := make(chan struct{})
				go func() { s.Close(); close(done) }()
				select {
				case <-done:
					closed = true
				case <-time.After(time.Minute):
					t.Fatalf("Close has not returned a minute after it started (goroutines creating: %d)", len(creationGoroutines()))
				}
				// The broker answers again: the abandoned creation completes and ends.
				proxy.resume()
				deadline := time.Now().Add(time.Minute)
				for len(creationGoroutines()) > 0 {
					if time.Now().After(deadline) {
						t.Fatalf("a minute after the broker answers again, a creation still runs:\n%s", strings.Join(creationGoroutines(), "\n\n"))
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
	}
}
