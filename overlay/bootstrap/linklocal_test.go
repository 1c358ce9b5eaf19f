package bootstrap

import (
	"github.com/peername/peername/overlay"

	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestDiscoveryCodec(t *testing.T) {
	t.Parallel()
	probe := discoveryMsg{typ: discoveryProbe, cloud: discoveryCloudTag("c"), nonce: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	answer := discoveryMsg{typ: discoveryAnswer, cloud: probe.cloud, nonce: probe.nonce}
	for _, m := range []discoveryMsg{probe, answer} {
		b := m.encode()
		got, err := decodeDiscovery(b)
		if err != nil || got != m {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", m, got, err)
		}
	}
	if pb, ab := probe.encode(), answer.encode(); len(ab) >= len(pb) {
		t.Fatalf("answer is %d bytes, probe %d: an answer must be smaller than its probe", len(ab), len(pb))
	}
	if discoveryCloudTag("") != discoveryCloudTag(overlay.DefaultCloud) || discoveryCloudTag("a") == discoveryCloudTag("b") {
		t.Fatal("cloud tags do not separate clouds")
	}
	good := probe.encode()
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version 2", mutate(func(b []byte) []byte { b[4] = 2; return b })},
		{"unknown type", mutate(func(b []byte) []byte { b[5] = 3; return b })},
		{"short probe", good[:40]},
		{"long probe", append(bytes.Clone(good), 0)},
		{"padding not zero", mutate(func(b []byte) []byte { b[63] = 1; return b })},
		{"long answer", append(answer.encode(), 0)},
		{"truncated header", good[:10]},
	}
	for _, tt := range tests {
		if _, err := decodeDiscovery(tt.in); !errors.Is(err, ErrDiscovery) {
			t.Errorf("%s: decodeDiscovery error = %v, want ErrDiscovery", tt.name, err)
		}
	}
}

func TestDiscoveryResponderAnswers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	probe := discoveryMsg{typ: discoveryProbe, cloud: discoveryCloudTag("lan"), nonce: [8]byte{9}}
	tests := []struct {
		name string
		from string
		msg  discoveryMsg
		want bool
	}{
		{"loopback prober", "127.0.0.1:5000", probe, true},
		{"IPv6 link-local prober", "[fe80::1%eth0]:5000", probe, true},
		{"other cloud", "127.0.0.1:5000", discoveryMsg{typ: discoveryProbe, cloud: discoveryCloudTag("other"), nonce: [8]byte{9}}, false},
		{"an answer is not answered", "127.0.0.1:5000", discoveryMsg{typ: discoveryAnswer, cloud: probe.cloud}, false},
		{"off-link prober (spoofable)", "203.0.113.7:5000", probe, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &Responder{cloud: discoveryCloudTag("lan"), tokens: linkLocalAnswerRate}
			a := r.answer(now, netip.MustParseAddrPort(tt.from), tt.msg.encode())
			if (a != nil) != tt.want {
				t.Fatalf("answered: %v, want %v", a != nil, tt.want)
			}
			if a == nil {
				return
			}
			m, err := decodeDiscovery(a)
			if err != nil || m.typ != discoveryAnswer || m.nonce != tt.msg.nonce || m.cloud != tt.msg.cloud {
				t.Fatalf("answer %+v, %v does not echo the probe", m, err)
			}
		})
	}
}

func TestDiscoveryResponderRateLimit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &Responder{cloud: discoveryCloudTag(""), tokens: linkLocalAnswerRate}
	probe := discoveryMsg{typ: discoveryProbe, cloud: r.cloud}.encode()
	from := netip.MustParseAddrPort("127.0.0.1:1")
	count := func(at time.Time, n int) int {
		answered := 0
		for range n {
			if r.answer(at, from, probe) != nil {
				answered++
			}
		}
		return answered
	}
	if got := count(now, 3*linkLocalAnswerRate); got != linkLocalAnswerRate {
		t.Fatalf("a burst got %d answers, want %d", got, linkLocalAnswerRate)
	}
	if got := count(now.Add(100*time.Millisecond), 10); got != linkLocalAnswerRate/10 {
		t.Fatalf("100 ms later %d answers, want %d", got, linkLocalAnswerRate/10)
	}
	if got := count(now.Add(time.Hour), 3*linkLocalAnswerRate); got != linkLocalAnswerRate {
		t.Fatalf("after a long pause %d answers, want the burst of %d (no more)", got, linkLocalAnswerRate)
	}
}

func TestLinkLocalBootstrapRefusesBadGroup(t *testing.T) {
	t.Parallel()
	for _, g := range []string{"127.0.0.1:3541", "239.255.80.78:0"} {
		_, err := LinkLocal{Group: netip.MustParseAddrPort(g)}.Seeds(t.Context())
		if !errors.Is(err, ErrBadSeed) {
			t.Errorf("group %s: error %v, want ErrBadSeed", g, err)
		}
	}
	if _, err := (LinkLocal{Interface: "no-such-interface0"}).Seeds(t.Context()); err == nil {
		t.Error("an unknown interface was accepted")
	}
}

// FuzzDecodeDiscovery checks the discovery decoder never panics and accepts
// only what re-encodes to the same bytes.
func FuzzDecodeDiscovery(f *testing.F) {
	f.Add(discoveryMsg{typ: discoveryProbe, cloud: discoveryCloudTag("x"), nonce: [8]byte{1}}.encode())
	f.Add(discoveryMsg{typ: discoveryAnswer, cloud: discoveryCloudTag("x"), nonce: [8]byte{1}}.encode())
	f.Add([]byte("PNLD\x01\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeDiscovery(b)
		if err != nil {
			if !errors.Is(err, ErrDiscovery) {
				t.Fatalf("error %v does not wrap ErrDiscovery", err)
			}
			return
		}
		if !bytes.Equal(m.encode(), b) {
			t.Fatalf("accepted %x, which re-encodes to %x", b, m.encode())
		}
	})
}
