package securechannel

import (
	"errors"
	"fmt"
	"testing"
)

// TestCrashedSenderEpochBacklog: the sender saves its state, seals messages across several
// key epochs (RekeyAfter 2), and crashes without saving again; the receiver has opened only
// the first of them, the rest wait in a stream. The restored sender seals from the position
// the save reserved (16 epochs ahead with this RekeyAfter): above every nonce it used, and
// within MaxEpochSkip of the receiver. Delivered in the stream's order, the backlog of the
// older epochs is opened before the receiver follows the restored sender to its epoch, so
// nothing is lost. The receiver keeps only its current and previous epochs' keys: a
// message of an older epoch that arrives after a later one (another route, not the
// stream's order) is dropped as retired.
func TestCrashedSenderEpochBacklog(t *testing.T) {
	a, b := pair(t, 2)
	saved := mustMarshal(t, a)
	var stream [][]byte
	for i := range 10 { // epochs 0 to 4
		stream = append(stream, seal(t, a, fmt.Sprint(i)))
	}
	for i := range 4 { // the receiver is at epoch 1
		open(t, b, stream[i], fmt.Sprint(i))
	}
	receiverLate := restoreChannel(t, mustMarshal(t, b)) // the same receiver, for the other order

	a2 := restoreChannel(t, saved) // the crash: restored from the last save, which reserves again
	after := seal(t, a2, "after the crash")
	h, _, err := ParseHeader(after)
	if err != nil {
		t.Fatal(err)
	}
	last, _, err := ParseHeader(stream[len(stream)-1])
	if err != nil {
		t.Fatal(err)
	}
	if !(position{last.Epoch, last.Nonce}).less(position{h.Epoch, h.Nonce}) || h.Epoch-b.cur.epoch > MaxEpochSkip {
		t.Fatalf("restored sender at epoch %d nonce %d: not above the last used (%d, %d), or beyond MaxEpochSkip from the receiver's epoch %d",
			h.Epoch, h.Nonce, last.Epoch, last.Nonce, b.cur.epoch)
	}

	// In the stream's order: the backlog, then what the restored sender sealed.
	for i := 4; i < len(stream); i++ {
		open(t, b, stream[i], fmt.Sprint(i))
	}
	open(t, b, after, "after the crash")
	open(t, b, seal(t, a2, "next"), "next")

	// Out of order: the restored sender's message first retires the backlog's epochs.
	open(t, receiverLate, after, "after the crash")
	for i := 4; i < len(stream); i++ {
		if _, err := receiverLate.Open(stream[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("backlog message %d (epoch %d) after the receiver moved to epoch %d: %v, want ErrReplay (retired)", i, i/2, h.Epoch, err)
		}
	}
}
