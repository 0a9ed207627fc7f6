package pulsar

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/sluicehq/sluice/core"
)

func init() {
	core.Register("pulsar", func(ctx context.Context, u *url.URL) (*core.Backend, error) {
		s, err := Open(ctx, u.String())
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: s, Index: s}, nil
	})
}

// Open builds a Store, and the pulsar.Client it owns (Close closes it), from a URL:
//
//	pulsar://host:6650?admin=http://host:8080&tenant=public&namespace=default&prefix=sluice-
//
// Query parameters, all optional: admin (the admin REST API; default the service host on
// port 8080), tenant, namespace, prefix (Options.TopicPrefix), max_message_size,
// max_partitions, max_producers (Options.MaxProducers), max_reader_bytes
// (Options.MaxReaderBytes), retention=infinite
// (Options.InfiniteRetention). Unknown parameters are rejected with core.ErrInvalidOption.
// Open checks that the admin API answers and that the namespace exists: an unreachable
// admin API returns an error matching core.ErrUnavailable, a missing namespace one matching
// core.ErrInvalidOption. It then checks the service URL: it connects to it and makes one
// lookup on the binary protocol (see [Store.pingService]), within ctx and at most
// serviceCheckTimeout; a service URL that does not answer, or answers another protocol,
// returns an error matching core.ErrUnavailable that names it, and a broker that requires
// authentication one matching core.ErrInvalidOption. The check leaves no connection or
// goroutine behind.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	s, err := openURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := s.ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.pingService(ctx, serviceCheckTimeout); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// serviceCheckTimeout bounds Open's service check (the dial, the handshake and the lookup)
// when ctx allows longer: on a healthy broker they take milliseconds, a port that does not
// speak Pulsar's protocol may never answer, and a dial to a host or port behind a firewall
// that drops it waits for the system's connect timeout, minutes.
const serviceCheckTimeout = 10 * time.Second

// pingService checks that the service URL speaks Pulsar's binary protocol, so that a wrong
// service port fails Open at once and not the first Append after DefaultOperationTimeout.
// It dials the service address (a closed port or an unknown host fails at once), then, on
// that connection, makes the protocol's handshake and asks for the partitioned-topic
// metadata of partition 0 of the index topic: one lookup, which creates nothing (a lookup
// never creates a topic, and a broker never auto-creates partitioned metadata for a
// partition's name). It does so itself (see checkLookup), not through the client, whose
// lookups cannot be stopped: it returns when ctx ends, and leaves nothing running. limit
// (serviceCheckTimeout) bounds it when ctx allows longer: the check failing for it is
// core.ErrUnavailable, never context.DeadlineExceeded, which is only ctx's.
func (s *Store) pingService(parent context.Context, limit time.Duration) error {
	service := s.serviceURL
	hint := fmt.Sprintf("the admin API at %s answered: check that Pulsar is running and that the pulsar:// URL names its binary protocol port (brokerServicePort, 6650 by default), not the admin or web port",
		s.admin.base)
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	var d net.Dialer
	var conn net.Conn
	var dialErr error
	for _, hostPort := range serviceAddrs(service) {
		c, err := d.DialContext(ctx, "tcp", hostPort)
		if err == nil {
			conn = c
			break
		}
		if dialErr == nil {
			dialErr = err
		}
	}
	if parent.Err() != nil {
		if conn != nil {
			conn.Close()
		}
		return fmt.Errorf("pulsar: check service URL %s: %w", service, parent.Err())
	}
	if conn == nil {
		if ctx.Err() != nil {
			dialErr = fmt.Errorf("no answer within %v: %w", limit, core.OwnTimeout(dialErr))
		}
		return fmt.Errorf("pulsar: connect to service URL %s: %w: %w (%s)", service, core.ErrUnavailable, dialErr, hint)
	}
	err := checkLookup(ctx, conn, s.partitionTopic(indexTopic, 0))
	switch {
	case err == nil:
		return nil
	case parent.Err() != nil:
		return fmt.Errorf("pulsar: check service URL %s: %w", service, parent.Err())
	case ctx.Err() != nil:
		err = fmt.Errorf("no answer within %v: %w", limit, core.OwnTimeout(err))
	}
	sentinel := checkErrSentinel(err)
	if sentinel == core.ErrInvalidOption {
		hint = "the broker requires authentication or refused this client: pulsar:// URLs configure none; build a pulsar.Client with its Authentication option and use New"
	}
	return fmt.Errorf("pulsar: lookup on service URL %s: %w: %w (%s)", service, sentinel, err, hint)
}

// openURL is Open without the check: it does no I/O.
func openURL(rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("pulsar: %w: URL %q: %w", core.ErrInvalidOption, rawURL, err)
	}
	if u.Scheme != "pulsar" || u.Host == "" {
		return nil, fmt.Errorf("pulsar: %w: URL %q: want pulsar://host:port[?admin=http://host:port&...]", core.ErrInvalidOption, rawURL)
	}
	if err := core.NoUserInfo(u); err != nil {
		return nil, fmt.Errorf("pulsar: %w", err)
	}
	var o Options
	admin := "http://" + net.JoinHostPort(u.Hostname(), "8080") // brackets an IPv6 address
	params, err := core.URLParams(u)
	if err != nil {
		return nil, fmt.Errorf("pulsar: %w", err)
	}
	for k, v := range params {
		switch k {
		case "admin":
			admin = v
		case "tenant":
			o.Tenant = v
		case "namespace":
			o.Namespace = v
		case "prefix":
			o.TopicPrefix = v
		case "max_message_size", "max_partitions", "max_producers", "max_reader_bytes":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("pulsar: %w: URL %q: %s=%q is not a positive integer", core.ErrInvalidOption, rawURL, k, v)
			}
			switch k {
			case "max_message_size":
				o.MaxMessageSize = n
			case "max_partitions":
				o.MaxPartitions = n
			case "max_reader_bytes":
				o.MaxReaderBytes = n
			default:
				o.MaxProducers = n
			}
		case "retention":
			if v != "infinite" {
				return nil, fmt.Errorf("pulsar: %w: URL %q: retention=%q; the only value is \"infinite\"", core.ErrInvalidOption, rawURL, v)
			}
			o.InfiniteRetention = true
		default:
			return nil, fmt.Errorf("pulsar: %w: URL %q: unknown parameter %q (known: admin, tenant, namespace, prefix, max_message_size, max_partitions, max_producers, max_reader_bytes, retention)",
				core.ErrInvalidOption, rawURL, k)
		}
	}
	service := "pulsar://" + u.Host
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("pulsar: %w: URL %q: unexpected path %q", core.ErrInvalidOption, rawURL, strings.TrimPrefix(u.Path, "/"))
	}
	cl, err := pulsar.NewClient(clientOptions(service))
	if err != nil {
		return nil, fmt.Errorf("pulsar: %w: client for %q: %w", core.ErrInvalidOption, service, err)
	}
	s, err := newStore(cl, true, admin, &o)
	if err != nil {
		cl.Close()
		return nil, err
	}
	s.serviceURL = service
	return s, nil
}

// clientOptions are the options of the client Open builds for service.
func clientOptions(service string) pulsar.ClientOptions {
	return pulsar.ClientOptions{
		URL:               service,
		OperationTimeout:  DefaultOperationTimeout,
		ConnectionTimeout: DefaultConnectionTimeout,
		Logger:            pulsarlog.DefaultNopLogger(),
	}
}

// serviceAddrs returns the host:port addresses of a service URL "pulsar://host[:port][,...]",
// with pulsar-client-go's default port 6650 where none is given.
func serviceAddrs(service string) []string {
	var addrs []string
	for _, h := range strings.Split(strings.TrimPrefix(service, "pulsar://"), ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "6650")
		}
		addrs = append(addrs, h)
	}
	return addrs
}
