package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/overlay"
)

// blaster is a fake host that sends a numbered message of a fixed size to
// node 1 every millisecond; node 1 (a blaster with size 0) records which
// numbers arrived.
type blaster struct {
	size, sent, left int
	next             time.Time
	out              [][]byte
	got              []bool
}

func (b *blaster) HandleTimer(now time.Time) {
	m := make([]byte, b.size)
	binary.BigEndian.PutUint32(m, uint32(b.sent))
	b.out = append(b.out, m)
	b.sent++
	if b.left--; b.left > 0 {
		b.next = now.Add(time.Millisecond)
	} else {
		b.next = time.Time{}
	}
}

func (b *blaster) HandleDatagram(_ time.Time, _ netip.AddrPort, data []byte) {
	n := int(binary.BigEndian.Uint32(data))
	for len(b.got) <= n {
		b.got = append(b.got, false)
	}
	b.got[n] = true
}

func (b *blaster) NextTimer() time.Time { return b.next }

func (b *blaster) Flush(_ time.Time, send func(netip.AddrPort, []byte)) {
	for _, m := range b.out {
		send(AddrOf(1), m)
	}
	b.out = b.out[:0]
}

// TestEngineLossModels: the fraction of messages delivered and the mean
// length of a run of lost ones, under uniform and Gilbert–Elliott loss, for
// messages that fit one datagram and for ones the driver would fragment (a
// message arrives only if every fragment does).
func TestEngineLossModels(t *testing.T) {
	t.Parallel()
	const msgs = 20000
	tests := []struct {
		name      string
		net       Network
		size      int
		frags     int     // datagrams per message
		delivered float64 // expected fraction
		run       float64 // expected mean length of a run of lost messages
	}{
		{"uniform", Network{Loss: 0.2}, 100, 1, 0.8, 1 / 0.8},
		{"uniform, 4 KiB unfragmented", Network{Loss: 0.2}, 4096, 1, 0.8, 1 / 0.8},
		{"bursts of 4", Network{Loss: 0.2, Burst: 4}, 100, 1, 0.8, 4},
		{"bursts of 10 at 30 %", Network{Loss: 0.3, Burst: 10}, 100, 1, 0.7, 10},
		{"fits with its frame byte", Network{Loss: 0.2, MaxDatagram: 1200}, 1199, 1, 0.8, 1 / 0.8},
		{"one byte more: 2 fragments", Network{Loss: 0.2, MaxDatagram: 1200}, 1200, 2, 0.64, 1 / 0.64},
		{"4 KiB: 4 fragments", Network{Loss: 0.2, MaxDatagram: 1200}, 4096, 4, math.Pow(0.8, 4), 1 / math.Pow(0.8, 4)},
		{"4 KiB in bursts", Network{Loss: 0.2, MaxDatagram: 1200, Burst: 4}, 4096, 4, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := NewEngine(7, tt.net, false)
			if err != nil {
				t.Fatal(err)
			}
			src := &blaster{size: tt.size, left: msgs, next: Epoch.Add(time.Millisecond)}
			dst := &blaster{}
			e.Add(src)
			e.Add(dst)
			e.Poke(0)
			e.Run(0)
			if got := Fragments(tt.size, tt.net.MaxDatagram); got != tt.frags {
				t.Errorf("Fragments(%d, %d) = %d, want %d", tt.size, tt.net.MaxDatagram, got, tt.frags)
			}
			var ok, runs, lostN int
			for i := range msgs {
				if i < len(dst.got) && dst.got[i] {
					ok++
					continue
				}
				lostN++
				if i == 0 || i-1 < len(dst.got) && dst.got[i-1] {
					runs++
				}
			}
			c := e.Counters()
			if int(c.Lost) != lostN || int(c.Sent) != msgs {
				t.Errorf("counters: sent %d lost %d, want %d and %d", c.Sent, c.Lost, msgs, lostN)
			}
			if tt.frags > 1 && (int(c.Fragmented) != msgs || c.FragmentLost != c.Lost) {
				t.Errorf("fragmented %d (want %d), lost with a fragment %d (want %d)", c.Fragmented, msgs, c.FragmentLost, c.Lost)
			}
			if tt.frags == 1 && c.Fragmented != 0 {
				t.Errorf("fragmented %d, want 0", c.Fragmented)
			}
			frac := float64(ok) / msgs
			if tt.delivered < 0 {
				// Fragments of one message are consecutive datagrams of a
				// bursty link: they tend to be lost together, so more
				// messages arrive than under uniform loss, fewer than whole.
				if frac <= math.Pow(0.8, 4)+0.03 || frac >= 0.8-0.03 {
					t.Errorf("delivered %.3f, want between %.3f and 0.8", frac, math.Pow(0.8, 4))
				}
				return
			}
			if math.Abs(frac-tt.delivered) > 0.02 {
				t.Errorf("delivered %.3f of messages, want %.3f", frac, tt.delivered)
			}
			if mean := float64(lostN) / float64(runs); math.Abs(mean-tt.run)/tt.run > 0.15 {
				t.Errorf("mean run of lost messages %.2f, want %.2f", mean, tt.run)
			}
		})
	}
}

func TestNetworkValidateLossModels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		net  Network
		ok   bool
	}{
		{"driver datagram", Network{MaxDatagram: DefaultMaxDatagram}, true},
		{"smallest datagram", Network{MaxDatagram: minMaxDatagram}, true},
		{"datagram too small", Network{MaxDatagram: minMaxDatagram - 1}, false},
		{"negative datagram", Network{MaxDatagram: -1}, false},
		{"bursts", Network{Loss: 0.3, Burst: 4}, true},
		{"burst under one datagram", Network{Loss: 0.3, Burst: 0.5}, false},
		{"negative burst", Network{Burst: -1}, false},
		{"NaN burst", Network{Burst: math.NaN()}, false},
		{"loss too high for the burst", Network{Loss: 0.6, Burst: 1}, false},
		{"total loss in bursts", Network{Loss: 1, Burst: 8}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.net.Validate()
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrBadConfig) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// lossyRun is a small run of the real core on a lossy network with the
// plugin's 2 s deadline, the defences on, one name per node and the state
// sweep (with the replica census) every 10 s.
func lossyRun(seed uint64, nodes int, net Network) Config {
	c := scenario(seed, nodes)
	c.Net.Loss, c.Net.Burst, c.Net.MaxDatagram = net.Loss, net.Burst, net.MaxDatagram
	c.Publishers = 1
	c.Lookups = 100
	c.LookupTimeout = 2 * time.Second
	c.LookupPhase = 60 * time.Second
	c.CheckEvery = 10 * time.Second
	c.Core.Defence = overlay.DefaultDefence(0)
	return c
}

// TestLossyNetworks: bursty loss and lost fragments cost no lookup an
// answer of "not found", and every name stays on its full replica set.
func TestLossyNetworks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		nodes   int
		net     Network
		payload int
	}{
		{"6 nodes, 30 % in bursts of 4", 6, Network{Loss: 0.3, Burst: 4, MaxDatagram: DefaultMaxDatagram}, 0},
		{"20 nodes, 30 % in bursts of 4", 20, Network{Loss: 0.3, Burst: 4, MaxDatagram: DefaultMaxDatagram}, 0},
		{"20 nodes, 20 %, 4 KiB records in fragments", 20, Network{Loss: 0.2, MaxDatagram: DefaultMaxDatagram}, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := lossyRun(31, tt.nodes, tt.net)
			cfg.Payload = tt.payload
			r := checkRun(t, cfg, 0.99)
			if r.NotFound != 0 || r.Stale != 0 || r.WrongRecord != 0 {
				t.Errorf("not found %d, stale %d, wrong %d; want 0", r.NotFound, r.Stale, r.WrongRecord)
			}
			if r.CensusChecks == 0 || r.CensusShort != 0 {
				t.Errorf("replica census: %d checks, %d short; want some and 0", r.CensusChecks, r.CensusShort)
			}
			if r.Lost == 0 {
				t.Error("nothing was lost")
			}
			if tt.payload > 0 && (r.Fragmented == 0 || r.FragmentLost == 0) {
				t.Errorf("fragmented %d, lost with a fragment %d; want both > 0", r.Fragmented, r.FragmentLost)
			}
			if tt.payload == 0 && r.Fragmented != 0 {
				t.Errorf("%d messages fragmented without large records", r.Fragmented)
			}
		})
	}
}

// TestCensusCatchesCutReplicas: names published while half the network is
// cut off from the other half (never healed) cannot reach the replicas on
// the far side; the census reports each as a violation. The same run without
// the cut has none.
func TestCensusCatchesCutReplicas(t *testing.T) {
	t.Parallel()
	half := make([]uint8, 20)
	for i := range 10 {
		half[i] = 1
	}
	tests := []struct {
		name string
		cut  bool
	}{{"whole network", false}, {"cut in half", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := lossyRun(32, 20, Network{})
			cfg.ProbeEvery = 0 // the cut names do not resolve either; the census is what is tested
			if tt.cut {
				// After the joins (done by 2 s), before the publishes (from 11 s).
				cfg.Net.Partitions = []Partition{{Start: 5 * time.Second, Group: half}}
			}
			r, err := runWorld(t, cfg)
			if r == nil {
				t.Fatal(err)
			}
			if r.CensusChecks == 0 {
				t.Fatal("the census checked nothing")
			}
			if !tt.cut {
				if err != nil || r.CensusShort != 0 {
					t.Fatalf("census short %d, err %v; want 0 and nil", r.CensusShort, err)
				}
				return
			}
			if !errors.Is(err, ErrInvariant) || r.CensusShort == 0 {
				t.Fatalf("census short %d, err %v; want shortfalls as violations", r.CensusShort, err)
			}
			if r.CensusShort != r.CensusChecks {
				t.Errorf("census short %d of %d checks; every name is cut from half its replicas", r.CensusShort, r.CensusChecks)
			}
			if !bytes.Contains([]byte(r.ViolationList[0]), []byte("replica census")) {
				t.Errorf("first violation %q is not the census's", r.ViolationList[0])
			}
		})
	}
}
