package pulsar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/core"
)

// admin is the part of Pulsar's admin REST API (v2) the backend uses, on plain net/http.
type admin struct {
	base   string // "http://host:port", no trailing slash
	hc     *http.Client
	tenant string
	ns     string
}

// adminError is a non-2xx answer of the admin API.
type adminError struct {
	Method, Path string
	Status       int
	Reason       string
}

func (e *adminError) Error() string {
	return fmt.Sprintf("admin %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Reason)
}

func (a *admin) topicPath(topic string) string {
	return "/admin/v2/persistent/" + url.PathEscape(a.tenant) + "/" + url.PathEscape(a.ns) + "/" + url.PathEscape(topic)
}

// do sends one request and decodes a JSON answer into out (may be nil).
func (a *admin) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		reason := strings.TrimSpace(string(data))
		var r struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(data, &r) == nil && r.Reason != "" {
			reason = r.Reason
		}
		return &adminError{Method: method, Path: path, Status: resp.StatusCode, Reason: reason}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin %s %s: decode %q: %w", method, path, data, err)
		}
	}
	return nil
}

// partitions returns the partition count of the partitioned topic, 0 when it does not
// exist (or is not partitioned). It never creates the topic.
func (a *admin) partitions(ctx context.Context, topic string) (int, error) {
	var m struct {
		Partitions int `json:"partitions"`
	}
	err := a.do(ctx, http.MethodGet, a.topicPath(topic)+"/partitions?checkAllowAutoCreation=false", nil, &m)
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.Status == http.StatusNotFound && !missingNamespace(aerr) {
		return 0, nil // recent brokers answer 404 for a missing topic, older ones {"partitions":0}
	}
	if err == nil && (m.Partitions < 0 || m.Partitions > core.MaxPartitions) {
		return 0, fmt.Errorf("admin: topic %s has %d partitions, outside [0, %d]", topic, m.Partitions, core.MaxPartitions)
	}
	return m.Partitions, err
}

// createPartitioned creates a partitioned topic with n partitions; an existing topic
// returns an adminError with status 409.
func (a *admin) createPartitioned(ctx context.Context, topic string, n int) error {
	return a.do(ctx, http.MethodPut, a.topicPath(topic)+"/partitions?createLocalTopicOnly=false", n, nil)
}

// deletePartitioned deletes a partitioned topic and its data, closing producers and readers.
func (a *admin) deletePartitioned(ctx context.Context, topic string) error {
	return a.do(ctx, http.MethodDelete, a.topicPath(topic)+"/partitions?force=true&deleteSchema=false", nil, nil)
}

// setInfiniteRetention sets the topic-level retention policy to keep every message.
func (a *admin) setInfiniteRetention(ctx context.Context, topic string) error {
	return a.do(ctx, http.MethodPost, a.topicPath(topic)+"/retention", map[string]int{
		"retentionTimeInMinutes": -1, "retentionSizeInMB": -1,
	}, nil)
}

// missingNamespace reports whether e is the broker saying that the tenant or namespace, not
// a topic, does not exist. It matches the broker's phrases, which contain spaces, so a
// topic-not-found answer that names a namespace or tenant (no spaces: newStore checks)
// such as "namespace1" does not match.
func missingNamespace(e *adminError) bool {
	if e.Status != http.StatusNotFound {
		return false
	}
	r := strings.ToLower(e.Reason)
	for _, p := range []string{"namespace not found", "namespace does not exist", "tenant not found", "tenant does not exist"} {
		if strings.Contains(r, p) {
			return true
		}
	}
	return false
}

func itoa(i int) string { return strconv.Itoa(i) }

// ping checks that the admin API answers and that the namespace exists (a GET of its
// policies, which never changes anything).
func (s *Store) ping(ctx context.Context) error {
	a := s.admin
	err := a.do(ctx, http.MethodGet, "/admin/v2/namespaces/"+url.PathEscape(a.tenant)+"/"+url.PathEscape(a.ns), nil, nil)
	var aerr *adminError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &aerr) && aerr.Status == http.StatusNotFound:
		return fmt.Errorf("pulsar: %w: namespace %s/%s does not exist: create it (pulsar-admin namespaces create %s/%s) or name another with tenant= and namespace=: %w",
			core.ErrInvalidOption, a.tenant, a.ns, a.tenant, a.ns, err)
	}
	err = s.mapErr(ctx, "connect", "", err)
	if errors.Is(err, core.ErrUnavailable) {
		return fmt.Errorf("%w (is Pulsar running, and its admin API at %s? set it with admin=)", err, a.base)
	}
	return err
}
