package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/core"
)

// Scheme is the URL scheme this package registers with [core.Register].
const Scheme = "kafka"

func init() {
	core.Register(Scheme, openURL)
}

// openURL opens a Store from a "kafka" URL; see the package doc, # Configuration.
func openURL(ctx context.Context, u *url.URL) (*core.Backend, error) {
	seeds, opts, kopts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	s, err := Dial(ctx, seeds, opts, kopts...)
	if err != nil {
		return nil, err
	}
	return &core.Backend{Storage: s, Index: s}, nil
}

// ParseURL returns the seed brokers, options and extra franz-go options (SASL, TLS, client
// id) a "kafka" URL names, for example
//
//	kafka://user:secret@host1:9092,host2:9092?prefix=app.&replication=3&sasl=scram-sha-512&tls=true
//
// The query parameters are listed in the package doc. An unknown parameter or a bad value
// returns an error matching [core.ErrInvalidOption].
func ParseURL(u *url.URL) (seeds []string, opts *Options, kopts []kgo.Opt, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("kafka: %w: URL %q: %s", core.ErrInvalidOption, u.Redacted(), fmt.Sprintf(format, args...))
	}
	if u.Scheme != Scheme {
		return nil, nil, nil, bad("scheme is %q, want %q", u.Scheme, Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, nil, nil, bad("path %q is not allowed; write kafka://host:9092,host2:9092?options", u.Path)
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, nil, nil, bad("broker %q is not host:port", h)
		}
		seeds = append(seeds, h)
	}
	if len(seeds) == 0 {
		return nil, nil, nil, bad("no brokers; write kafka://host:9092")
	}
	opts = &Options{}
	var (
		mechanism   string
		useTLS      bool
		tlsInsecure bool
		serverName  string
	)
	params, err := core.URLParams(u)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kafka: %w", err)
	}
	for key, v := range params {
		intVal := func(bits int) (int64, error) {
			n, err := strconv.ParseInt(v, 10, bits)
			if err != nil || n < 0 {
				return 0, bad("%s=%q is not a non-negative integer", key, v)
			}
			return n, nil
		}
		boolVal := func() (bool, error) {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return false, bad("%s=%q is not true or false", key, v)
			}
			return b, nil
		}
		switch key {
		case "prefix":
			opts.Prefix = v
		case "replication":
			n, err := intVal(16)
			if err != nil {
				return nil, nil, nil, err
			}
			opts.ReplicationFactor = int16(n)
		case "max_partitions":
			n, err := intVal(32)
			if err != nil {
				return nil, nil, nil, err
			}
			opts.MaxPartitions = int(n)
		case "max_message_size":
			n, err := intVal(32)
			if err != nil {
				return nil, nil, nil, err
			}
			opts.MaxMessageSize = int(n)
		case "fetch_max_bytes":
			n, err := intVal(32)
			if err != nil {
				return nil, nil, nil, err
			}
			opts.FetchMaxBytes = int32(n)
		case "close_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, nil, nil, bad("close_timeout=%q is not a duration like 10s", v)
			}
			opts.CloseTimeout = d
		case "client_id":
			kopts = append(kopts, kgo.ClientID(v))
		case "sasl":
			mechanism = strings.ToLower(v)
		case "tls":
			if useTLS, err = boolVal(); err != nil {
				return nil, nil, nil, err
			}
		case "tls_insecure_skip_verify":
			if tlsInsecure, err = boolVal(); err != nil {
				return nil, nil, nil, err
			}
		case "tls_server_name":
			serverName = v
		default:
			if strings.HasPrefix(key, "topic.") {
				if opts.TopicConfig == nil {
					opts.TopicConfig = map[string]string{}
				}
				opts.TopicConfig[strings.TrimPrefix(key, "topic.")] = v
				continue
			}
			return nil, nil, nil, bad("unknown parameter %q", key)
		}
	}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	switch mechanism {
	case "":
		if u.User != nil {
			return nil, nil, nil, bad("user information needs sasl=plain, scram-sha-256 or scram-sha-512")
		}
	case "plain":
		kopts = append(kopts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "scram-sha-256":
		kopts = append(kopts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "scram-sha-512":
		kopts = append(kopts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, nil, nil, bad("sasl=%q: want plain, scram-sha-256 or scram-sha-512", mechanism)
	}
	if mechanism != "" && user == "" {
		return nil, nil, nil, bad("sasl=%s needs a user: kafka://user:password@host:9092", mechanism)
	}
	if (tlsInsecure || serverName != "") && !useTLS {
		return nil, nil, nil, bad("tls_insecure_skip_verify and tls_server_name need tls=true")
	}
	if useTLS {
		kopts = append(kopts, kgo.DialTLSConfig(&tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         serverName,
			InsecureSkipVerify: tlsInsecure, //nolint:gosec // explicitly requested in the URL, for tests
		}))
	}
	// A value each parameter parses but Options refuses (max_partitions above the limit, a
	// prefix that makes no valid topic name) is a bad value of the URL too.
	if _, err := opts.withDefaults(); err != nil {
		return nil, nil, nil, err
	}
	return seeds, opts, kopts, nil
}
