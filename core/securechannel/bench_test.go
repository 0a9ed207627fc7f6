package securechannel

import (
	"fmt"
	"testing"
)

func BenchmarkSealOpen(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			a, r := pair(b, 0)
			pt := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				m, err := a.Seal(pt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Open(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshakeXX measures the CPU time of one full XX handshake, both sides (3
// messages, 5 DH operations per side incl. key generation).
func BenchmarkHandshakeXX(b *testing.B) {
	ia, ib := mustIdentity(b), mustIdentity(b)
	ci := Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())}
	cr := Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runHandshake(b, ci, cr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshakeIK measures one full IK handshake, both sides (2 messages).
func BenchmarkHandshakeIK(b *testing.B) {
	ia, ib := mustIdentity(b), mustIdentity(b)
	ci := Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())}
	cr := Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())}
	b.ReportAllocs()
	for b.Loop() {
		ini, err := NewInitiatorIK(ci, ib.PublicKey())
		if err != nil {
			b.Fatal(err)
		}
		res, _ := NewResponder(cr)
		m1, _ := ini.WriteMessage()
		if err := res.ReadMessage(m1); err != nil {
			b.Fatal(err)
		}
		m2, _ := res.WriteMessage()
		if err := ini.ReadMessage(m2); err != nil {
			b.Fatal(err)
		}
	}
}
