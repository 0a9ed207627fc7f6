package pulsar

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Open's service check speaks the first exchanges of Pulsar's binary protocol itself, on a
// connection it owns, rather than through the client: pulsar-client-go's lookups take no
// context and retry on new connections until the operation timeout, even after the client
// is closed, so a check given up would leave one running for up to 30 s. A frame is
// [total size u32][command size u32][BaseCommand], big endian, total size = 4 + command
// size; commands are protobuf messages (PulsarApi.proto), of which the check encodes and
// decodes the few fields it needs.

// BaseCommand types (and the numbers of the BaseCommand fields that carry them).
const (
	cmdConnect                     = 2
	cmdConnected                   = 3
	cmdError                       = 14
	cmdPing                        = 18
	cmdPong                        = 19
	cmdPartitionedMetadata         = 21
	cmdPartitionedMetadataResponse = 22
)

// Values of Pulsar's ServerError enum that mean a configuration to change.
const (
	serverAuthenticationError = 3
	serverAuthorizationError  = 4
)

const (
	// checkProtocolVersion is the protocol version the check announces (pulsar-client-go
	// v0.19 announces 20); the broker answers with the lower of its own and this one.
	checkProtocolVersion = 20
	// maxCheckFrame bounds a frame the check reads: its answers are a few hundred bytes, and
	// the first bytes of another protocol (an HTTP reply starts "HTTP") read as a huge size.
	maxCheckFrame = 64 << 10
)

// errNotPulsar: the peer's bytes are not frames of Pulsar's binary protocol.
var errNotPulsar = errors.New("the answer is not Pulsar's binary protocol")

// pbVarint and pbBytes append a protobuf field of wire type 0 (varint) or 2 (bytes).
func pbVarint(b []byte, field int, v uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(b, uint64(field)<<3), v)
}

func pbBytes(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// pbMsg is a decoded protobuf message: its varint and bytes fields by number (the last of
// a repeated one).
type pbMsg struct {
	varints map[uint64]uint64
	bytes   map[uint64][]byte
}

// parsePB decodes a protobuf message, skipping fixed-size fields; b is retained.
func parsePB(b []byte) (pbMsg, error) {
	m := pbMsg{varints: map[uint64]uint64{}, bytes: map[uint64][]byte{}}
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return m, errNotPulsar
		}
		b = b[n:]
		field := tag >> 3
		switch tag & 7 {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return m, errNotPulsar
			}
			m.varints[field] = v
			b = b[n:]
		case 1, 5: // fixed64, fixed32
			size := 8
			if tag&7 == 5 {
				size = 4
			}
			if len(b) < size {
				return m, errNotPulsar
			}
			b = b[size:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return m, errNotPulsar
			}
			m.bytes[field] = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			return m, errNotPulsar
		}
	}
	return m, nil
}

// checkFrame returns the frame of a command of type typ whose body (the BaseCommand field
// of that number) is body.
func checkFrame(typ int, body []byte) []byte {
	cmd := pbBytes(pbVarint(nil, 1, uint64(typ)), typ, body)
	out := binary.BigEndian.AppendUint32(nil, uint32(4+len(cmd)))
	out = binary.BigEndian.AppendUint32(out, uint32(len(cmd)))
	return append(out, cmd...)
}

// readCheckCommand reads one frame from r and returns its command's type and body.
func readCheckCommand(r io.Reader) (typ uint64, body pbMsg, err error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, body, err
	}
	total := binary.BigEndian.Uint32(head[:])
	if total < 4 || total > maxCheckFrame {
		return 0, body, errNotPulsar
	}
	frame := make([]byte, total)
	if _, err := io.ReadFull(r, frame); err != nil {
		return 0, body, fmt.Errorf("%w: %w", errNotPulsar, err)
	}
	size := binary.BigEndian.Uint32(frame)
	if size > total-4 {
		return 0, body, errNotPulsar
	}
	cmd, err := parsePB(frame[4 : 4+size])
	if err != nil {
		return 0, body, err
	}
	typ, ok := cmd.varints[1]
	if !ok {
		return 0, body, errNotPulsar
	}
	body, err = parsePB(cmd.bytes[typ])
	return typ, body, err
}

// checkCommandErr is a broker's refusal (an ERROR command, or a failed lookup).
type checkCommandErr struct {
	code uint64 // ServerError
	msg  string
}

func (e *checkCommandErr) Error() string {
	return fmt.Sprintf("broker error %d: %s", e.code, e.msg)
}

// awaitCheckCommand reads commands from conn until one of type want, answering pings.
func awaitCheckCommand(conn net.Conn, want uint64) (pbMsg, error) {
	for {
		typ, body, err := readCheckCommand(conn)
		switch {
		case err != nil:
			return body, err
		case typ == want:
			return body, nil
		case typ == cmdError:
			return body, &checkCommandErr{code: body.varints[2], msg: string(body.bytes[3])}
		case typ == cmdPing:
			if _, err := conn.Write(checkFrame(cmdPong, nil)); err != nil {
				return body, err
			}
		default:
			return body, fmt.Errorf("%w: command %d while waiting for %d", errNotPulsar, typ, want)
		}
	}
}

// checkLookup makes, on conn, the handshake of Pulsar's binary protocol (CONNECT, answered
// by CONNECTED) and one lookup: the partitioned-topic metadata of topic. It returns when
// they are answered or when ctx ends, whichever is first, and closes conn. It starts no
// goroutine that outlives it.
func checkLookup(ctx context.Context, conn net.Conn, topic string) error {
	defer conn.Close()
	// When ctx ends (its error is then set), a deadline in the past unblocks reads and
	// writes at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := func() error {
		connect := pbBytes(nil, 1, []byte("sluice")) // client_version
		connect = pbVarint(connect, 4, checkProtocolVersion)
		if _, err := conn.Write(checkFrame(cmdConnect, connect)); err != nil {
			return err
		}
		if _, err := awaitCheckCommand(conn, cmdConnected); err != nil {
			return err
		}
		lookup := pbBytes(nil, 1, []byte(topic))
		lookup = pbVarint(lookup, 2, 1) // request_id
		if _, err := conn.Write(checkFrame(cmdPartitionedMetadata, lookup)); err != nil {
			return err
		}
		res, err := awaitCheckCommand(conn, cmdPartitionedMetadataResponse)
		if err != nil {
			return err
		}
		if res.varints[3] == 1 { // response: Failed
			return &checkCommandErr{code: res.varints[4], msg: string(res.bytes[5])}
		}
		return nil
	}()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// checkErrSentinel is the sentinel of a failed check: core.ErrInvalidOption when the broker
// refused the (absent) credentials, core.ErrUnavailable otherwise.
func checkErrSentinel(err error) error {
	var ce *checkCommandErr
	if errors.As(err, &ce) && (ce.code == serverAuthenticationError || ce.code == serverAuthorizationError) {
		return core.ErrInvalidOption
	}
	return core.ErrUnavailable
}
