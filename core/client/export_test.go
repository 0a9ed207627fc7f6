package client

// SetSlotTaken sets the hook that Publish calls once it holds a window slot, before it
// queues its message. Set it before p is used from other goroutines.
func SetSlotTaken(p *Publisher, f func()) { p.slotTaken = f }

// Closing returns the channel that Close closes when it begins.
func Closing(p *Publisher) <-chan struct{} { return p.closing }
