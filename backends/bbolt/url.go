package bbolt

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Scheme is the URL scheme this package registers with [core.Register].
const Scheme = "bbolt"

func init() {
	core.Register(Scheme, openURL)
}

// openURL opens a Store from a "bbolt" URL; see the package doc, # Configuration.
func openURL(ctx context.Context, u *url.URL) (*core.Backend, error) {
	path, opts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	return &core.Backend{Storage: s, Index: s}, nil
}

// ParseURL returns the path and options a "bbolt" URL names: bbolt:///absolute/path or
// bbolt:relative/path, with the query parameters listed in the package doc. An unknown
// parameter or a bad value returns an error matching [core.ErrInvalidOption].
func ParseURL(u *url.URL) (string, *Options, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("bbolt: %w: URL %q: %s", core.ErrInvalidOption, u.Redacted(), fmt.Sprintf(format, args...))
	}
	if u.Scheme != Scheme {
		return "", nil, bad("scheme is %q, want %q", u.Scheme, Scheme)
	}
	if err := core.NoUserInfo(u); err != nil {
		return "", nil, fmt.Errorf("bbolt: %w", err)
	}
	path := u.Path
	switch {
	case u.Opaque != "":
		// bbolt:relative/path. url.Parse leaves an opaque part escaped (it decodes only
		// u.Path): decode it as it decodes an absolute path, or "bbolt:my%20data" would
		// name the directory "my%20data", and a relative path could not hold '?' or '#'.
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return "", nil, bad("path: %v", err)
		}
		path = p
	case u.Host != "" && u.Host != "localhost":
		return "", nil, bad("host %q is not allowed; write bbolt:///absolute/path or bbolt:relative/path", u.Host)
	}
	if path == "" {
		return "", nil, bad("no path; write bbolt:///absolute/path or bbolt:relative/path")
	}
	var o Options
	params, err := core.URLParams(u)
	if err != nil {
		return "", nil, fmt.Errorf("bbolt: %w", err)
	}
	for key, v := range params {
		var err error
		switch key {
		case "max_message_size":
			o.MaxMessageSize, err = parsePositive(v)
		case "max_partitions":
			o.MaxPartitions, err = parsePositive(v)
		case "max_fetch_bytes":
			o.MaxFetchBytes, err = parsePositive(v)
		case "max_commit_bytes":
			o.MaxCommitBytes, err = parsePositive(v)
		case "max_messages":
			o.MaxMessagesPerPartition, err = parsePositive(v)
			if err != nil {
				err = fmt.Errorf("%w (the newest messages each partition keeps; leave the parameter out to keep every message)", err)
			}
		case "nosync":
			o.NoSync, err = strconv.ParseBool(v)
		case "sync_freelist":
			o.SyncFreelist, err = strconv.ParseBool(v)
		case "lock_timeout":
			o.LockTimeout, err = time.ParseDuration(v)
			if err == nil && o.LockTimeout <= 0 {
				err = fmt.Errorf("must be positive")
			}
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(v, 8, 32)
			if err == nil && (m == 0 || m > 0o777) {
				err = fmt.Errorf("must be an octal permission between 1 and 777")
			}
			o.FileMode = os.FileMode(m)
		default:
			return "", nil, bad("unknown parameter %q; known: %s", key, strings.Join(urlParams, ", "))
		}
		if err != nil {
			return "", nil, bad("parameter %s=%q: %v", key, v, err)
		}
	}
	if _, err := o.withDefaults(); err != nil {
		return "", nil, err
	}
	return path, &o, nil
}

var urlParams = []string{"lock_timeout", "max_commit_bytes", "max_fetch_bytes", "max_message_size", "max_messages", "max_partitions", "mode", "nosync", "sync_freelist"}

func parsePositive(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return n, nil
}
