package core

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Backend is an opened backend: its Storage and the IndexStorage that goes with it (the
// same object for backends that implement both).
type Backend struct {
	Storage Storage
	Index   IndexStorage
}

// Close closes the storage, then the index storage (once if they are the same object): the
// storage's Close waits for its calls in flight, which may use the index storage (a
// backend's DeleteStream deletes the stream's saved indexes).
func (b *Backend) Close() error {
	var errs []error
	if b.Storage != nil {
		errs = append(errs, b.Storage.Close())
	}
	if b.Index != nil && any(b.Index) != any(b.Storage) {
		errs = append(errs, b.Index.Close())
	}
	return errors.Join(errs...)
}

// Opener opens a backend from a parsed URL whose scheme it registered. It gets the URL as
// url.Parse gives it: a relative path ("mybroker:data/dir") is in u.Opaque, an absolute one
// ("mybroker:///var/data") in u.Path, an address ("mybroker://host:1234") in u.Host; read the
// query with [URLParams]. Refuse what you do not understand (an unknown parameter, a host
// where a path is meant) with an error matching [ErrInvalidOption], so that a typo is not
// silently ignored.
type Opener func(ctx context.Context, u *url.URL) (*Backend, error)

var registry = struct {
	sync.RWMutex
	m map[string]Opener
}{m: map[string]Opener{}}

// Register makes a backend available to [Open] under a URL scheme. It is meant to be called
// from a backend package's init; registering a scheme twice or a nil opener panics (as
// database/sql.Register does).
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if open == nil {
		panic("sluice: Register opener is nil")
	}
	if _, dup := registry.m[scheme]; dup {
		panic("sluice: Register called twice for scheme " + scheme)
	}
	registry.m[scheme] = open
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	s := make([]string, 0, len(registry.m))
	for k := range registry.m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the backend named by rawURL, for example "bbolt:///var/lib/sluice",
// "memory://", "kafka://127.0.0.1:9092". The backend's package must be imported (usually
// blank-imported by the main package) so its scheme is registered.
func Open(ctx context.Context, rawURL string) (*Backend, error) {
	u, open, err := lookup(rawURL)
	if err != nil {
		return nil, err
	}
	b, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("open %s backend: %w", u.Scheme, err)
	}
	return b, nil
}

// CheckURL returns the error Open would return for rawURL before opening anything: a URL
// that does not parse, has no scheme or names a scheme no imported backend registered (an
// error matching [ErrInvalidOption]). It lets a program refuse a bad URL before long work.
func CheckURL(rawURL string) error {
	_, _, err := lookup(rawURL)
	return err
}

// lookup parses rawURL and finds the Opener of its scheme.
func lookup(rawURL string) (*url.URL, Opener, error) {
	shown := RedactURL(rawURL) // errors are printed and logged: never with the password
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL it quotes
		}
		return nil, nil, fmt.Errorf("%w: backend URL %q: %w", ErrInvalidOption, shown, err)
	}
	if u.Scheme == "" {
		return nil, nil, fmt.Errorf("%w: backend URL %q has no scheme; use one of %s", ErrInvalidOption, shown, schemeList())
	}
	registry.RLock()
	open := registry.m[u.Scheme]
	registry.RUnlock()
	if open == nil {
		return nil, nil, fmt.Errorf("%w: unknown backend %q in %q; registered: %s (a backend registers its scheme when its package is imported, e.g. import _ \"github.com/sluicehq/sluice/backends/bbolt\")", ErrInvalidOption, u.Scheme, shown, schemeList())
	}
	return u, open, nil
}

// RedactURL returns rawURL with its password, if it has one, replaced by "xxxxx"
// (url.URL.Redacted), for logs and reports, also when rawURL does not parse (the
// "user:password@" of what follows "scheme://"), and likewise the passwords of URLs given as
// its query parameters (a backend that names another, as kinesis's index= does); any other
// string is returned as it is.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err == nil {
		query, nested := redactQuery(u.RawQuery)
		_, hasPassword := u.User.Password()
		if !hasPassword && !nested {
			return rawURL
		}
		u.RawQuery = query
		return u.Redacted()
	}
	// Does not parse: find the authority as url.Parse would, and its last '@'.
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return rawURL
	}
	start := len(rawURL) - len(rest)
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return rawURL
	}
	colon := strings.Index(authority[:at], ":")
	if colon < 0 {
		return rawURL
	}
	return rawURL[:start+colon+1] + "xxxxx" + rawURL[start+at:]
}

// redactQuery applies RedactURL to the value of every parameter of a raw query that holds a
// URL ("://"), and reports whether one had a password. The other parameters are kept as
// they are.
func redactQuery(rawQuery string) (string, bool) {
	if !strings.Contains(rawQuery, "://") && !strings.Contains(strings.ToLower(rawQuery), "%3a%2f%2f") {
		return rawQuery, false
	}
	parts := strings.Split(rawQuery, "&")
	changed := false
	for i, part := range parts {
		key, raw, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		if v, err := url.QueryUnescape(raw); err == nil {
			if r := RedactURL(v); r != v {
				parts[i], changed = key+"="+url.QueryEscape(r), true
			}
		} else if r := RedactURL(raw); r != raw { // not validly escaped: as it is
			parts[i], changed = key+"="+r, true
		}
	}
	return strings.Join(parts, "&"), changed
}

// URLParams returns the query parameters of a backend URL, one value each, for an [Opener]
// to read. A parameter given more than once, or a query that is not validly escaped,
// returns an error matching [ErrInvalidOption]: which value was meant is not clear.
func URLParams(u *url.URL) (map[string]string, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %q: query: %w", ErrInvalidOption, RedactURL(u.String()), err)
	}
	params := make(map[string]string, len(q))
	for k, vs := range q {
		if len(vs) > 1 {
			return nil, fmt.Errorf("%w: URL %q: parameter %q is given %d times", ErrInvalidOption, RedactURL(u.String()), k, len(vs))
		}
		params[k] = vs[0]
	}
	return params, nil
}

// NoUserInfo returns an error matching [ErrInvalidOption] when u carries user information
// (USER[:PASSWORD]@): an [Opener] whose backend takes no credentials from its URL refuses
// them rather than ignore them, so that nobody believes a password is in use.
func NoUserInfo(u *url.URL) error {
	if u.User == nil {
		return nil
	}
	return fmt.Errorf("%w: URL %q: user information is not used by the %s backend; remove USER[:PASSWORD]@", ErrInvalidOption, RedactURL(u.String()), u.Scheme)
}

func schemeList() string {
	s := Schemes()
	if len(s) == 0 {
		return "(none: blank-import a backend package)"
	}
	return strings.Join(s, ", ")
}
