package bistream

// SetCloseHook makes t's Close call f for each publisher it closes, with that publisher's
// Close; call it before Close.
func SetCloseHook(t *Transport, f func(closePublisher func() error) error) { t.closeHook = f }

// SetPublishHook makes each stream sender of t call f(stream) between taking the stream's
// publisher and publishing to it; call it before the first send.
func SetPublishHook(t *Transport, f func(stream string)) { t.publishHook = f }

// SetRetireHook makes t call f(stream) when it retires the publisher of stream (see
// WithMaxPublishers), just before the retirement's Flush; call it before the first send.
func SetRetireHook(t *Transport, f func(stream string)) { t.retireHook = f }

// SetNewHook makes New call f, with the Transport it makes, between becoming the node's
// fallback and reopening the outboxes, until the test ends.
func SetNewHook(tb interface{ Cleanup(func()) }, f func(*Transport)) {
	newHook = f
	tb.Cleanup(func() { newHook = nil })
}
