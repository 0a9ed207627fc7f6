package bistream

// SetCloseHook makes t's Close call f for each publisher it closes, with that publisher's
// Close; call it before Close.
func SetCloseHook(t *Transport, f func(closePublisher func() error) error) { t.closeHook = f }
