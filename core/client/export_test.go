package client

// SetSlotTaken sets the hook that Publish calls once it holds a window slot, before it
// queues its message. Set it before p is used from other goroutines.
func SetSlotTaken(p *Publisher, f func()) { p.slotTaken = f }

// Closing returns the channel that Close closes when it begins.
func Closing(p *Publisher) <-chan struct{} { return p.closing }

// MessagesInMemory returns how many of p's unconfirmed messages have their bytes in memory,
// and how many are still only in the outbox.
func MessagesInMemory(p *Publisher) (loaded, stored int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.queue {
		switch {
		case e.stored:
			stored++
		case e.data != nil:
			loaded++
		}
	}
	return loaded, stored
}
