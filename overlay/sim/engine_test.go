package sim

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// pinger is a fake host: on every timer it pings a random node; it answers
// pings with pongs and records what the network did to the datagrams.
type pinger struct {
	self, n  int
	rng      *rand.Rand
	period   time.Duration
	next     time.Time
	out      []outPkt
	seqTo    map[int]uint32
	lastFrom map[int]uint32
	seen     map[[2]uint32]bool

	got, pongs, dups, reordered int
	minDelay, maxDelay          time.Duration
	early                       int // HandleTimer before NextTimer
	crossGroup                  func(from int, now time.Time) bool
	crossed                     int
}

type outPkt struct {
	to   netip.AddrPort
	data []byte
}

func newPinger(self, n int, seed uint64, period time.Duration) *pinger {
	return &pinger{
		self: self, n: n, period: period,
		rng:      rand.New(rand.NewPCG(seed, uint64(self))),
		next:     Epoch.Add(time.Duration(self+1) * time.Millisecond),
		seqTo:    map[int]uint32{},
		lastFrom: map[int]uint32{},
		seen:     map[[2]uint32]bool{},
		minDelay: time.Hour,
	}
}

func (p *pinger) HandleTimer(now time.Time) {
	if now.Before(p.next) {
		p.early++
	}
	to := p.rng.IntN(p.n - 1)
	if to >= p.self {
		to++
	}
	p.seqTo[to]++
	msg := make([]byte, 13)
	msg[0] = 'P'
	binary.BigEndian.PutUint32(msg[1:], p.seqTo[to])
	binary.BigEndian.PutUint64(msg[5:], uint64(now.Sub(Epoch)))
	p.out = append(p.out, outPkt{AddrOf(to), msg})
	p.next = now.Add(p.period)
}

func (p *pinger) HandleDatagram(now time.Time, from netip.AddrPort, data []byte) {
	f := IndexOf(from)
	if data[0] == 'O' {
		p.pongs++
		return
	}
	p.got++
	if p.crossGroup != nil && p.crossGroup(f, now) {
		p.crossed++
	}
	seq := binary.BigEndian.Uint32(data[1:])
	key := [2]uint32{uint32(f), seq}
	if p.seen[key] {
		p.dups++
	}
	p.seen[key] = true
	if seq < p.lastFrom[f] {
		p.reordered++
	}
	p.lastFrom[f] = max(p.lastFrom[f], seq)
	d := now.Sub(Epoch.Add(time.Duration(binary.BigEndian.Uint64(data[5:]))))
	p.minDelay, p.maxDelay = min(p.minDelay, d), max(p.maxDelay, d)
	p.out = append(p.out, outPkt{from, []byte{'O'}})
}

func (p *pinger) NextTimer() time.Time { return p.next }

func (p *pinger) Flush(_ time.Time, send func(netip.AddrPort, []byte)) {
	for _, o := range p.out {
		send(o.to, o.data)
	}
	p.out = p.out[:0]
}

func runPingers(t testing.TB, seed uint64, n int, net Network, until time.Duration) (*Engine, []*pinger) {
	t.Helper()
	e, err := NewEngine(seed, net, true)
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]*pinger, n)
	for i := range ps {
		ps[i] = newPinger(i, n, seed, 100*time.Millisecond)
		e.Add(ps[i])
		e.Poke(i)
	}
	e.Run(until)
	return e, ps
}

func TestAddrRoundTrip(t *testing.T) {
	t.Parallel()
	for _, i := range []int{0, 1, 255, 65535, 1 << 20, 1<<32 - 2} {
		if got := IndexOf(AddrOf(i)); got != i {
			t.Errorf("IndexOf(AddrOf(%d)) = %d", i, got)
		}
	}
	if a, b := AddrOf(1).Addr().As16(), AddrOf(2).Addr().As16(); [6]byte(a[:6]) == [6]byte(b[:6]) {
		t.Errorf("nodes 1 and 2 share a /48: %v %v", AddrOf(1), AddrOf(2))
	}
	// Nodes put in one group share a /48 and still have distinct addresses.
	a, b := addrIn(5, 1<<27), addrIn(9, 1<<27)
	if a16, b16 := a.Addr().As16(), b.Addr().As16(); [6]byte(a16[:6]) != [6]byte(b16[:6]) || a == b {
		t.Errorf("grouped nodes: %v %v, want one /48, two addresses", a, b)
	}
	if IndexOf(a) != 5 || IndexOf(b) != 9 {
		t.Errorf("IndexOf grouped: %d %d, want 5 9", IndexOf(a), IndexOf(b))
	}
	for _, s := range []string{"[3fff:0:2::2:0:1]:53", "10.0.0.1:3540", "[fd00:0:0:1::1]:3540", "[3fff:0:2::1]:3540",
		"[3fff:1000:2::2:0:1]:3540", "[3fff:0:2:1:0:2:0:1]:3540", "[3fff:0:2::2:0:2]:3540", "[3fff:0:2::2:1:1]:3540",
		"[3fff:0:2::2:0:1%eth0]:3540", "[3ffe:0:2::2:0:1]:3540"} {
		if got := IndexOf(netip.MustParseAddrPort(s)); got != -1 {
			t.Errorf("IndexOf(%s) = %d, want -1", s, got)
		}
	}
	if got := IndexOf(netip.MustParseAddrPort("[3fff:0:2::2:0:1]:" + strconv.Itoa(int(Port)))); got != 1 {
		t.Errorf("IndexOf(node 1's address) = %d, want 1", got)
	}
}

func TestEngineDeterministic(t *testing.T) {
	t.Parallel()
	net := Network{RTTMin: 20 * time.Millisecond, RTTMax: 200 * time.Millisecond, Loss: 0.1, Duplicate: 0.05, Reorder: 0.1}
	a, _ := runPingers(t, 7, 30, net, 10*time.Second)
	b, _ := runPingers(t, 7, 30, net, 10*time.Second)
	c, _ := runPingers(t, 8, 30, net, 10*time.Second)
	if a.Trace() != b.Trace() || a.Counters() != b.Counters() {
		t.Errorf("same seed, different runs: %x %+v / %x %+v", a.Trace(), a.Counters(), b.Trace(), b.Counters())
	}
	if a.Trace() == c.Trace() {
		t.Errorf("seeds 7 and 8 gave the same trace %x", a.Trace())
	}
}

func TestEngineNetworkModel(t *testing.T) {
	t.Parallel()
	const rttMin, rttMax = 20 * time.Millisecond, 200 * time.Millisecond
	tests := []struct {
		name                   string
		net                    Network
		wantDups, wantReorders bool
	}{
		{"clean", Network{RTTMin: rttMin, RTTMax: rttMax}, false, false},
		{"loss", Network{RTTMin: rttMin, RTTMax: rttMax, Loss: 0.2}, false, false},
		{"duplicate", Network{RTTMin: rttMin, RTTMax: rttMax, Duplicate: 0.2}, true, true},
		{"reorder", Network{RTTMin: rttMin, RTTMax: rttMax, Reorder: 0.3}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, ps := runPingers(t, 3, 8, tt.net, 30*time.Second)
			c := e.Counters()
			var dups, reorders, got, early int
			for _, p := range ps {
				dups += p.dups
				reorders += p.reordered
				got += p.got
				early += p.early
				if p.minDelay < rttMin/2 {
					t.Errorf("node %d: delay %v below RTTMin/2", p.self, p.minDelay)
				}
				if limit := rttMax / 2; tt.net.Duplicate == 0 && tt.net.Reorder == 0 && p.maxDelay > limit {
					t.Errorf("node %d: delay %v above RTTMax/2", p.self, p.maxDelay)
				}
			}
			if early > 0 {
				t.Errorf("%d timers fired before NextTimer", early)
			}
			if (dups > 0) != tt.wantDups {
				t.Errorf("duplicates seen = %d, want any: %v", dups, tt.wantDups)
			}
			if (reorders > 0) != tt.wantReorders {
				t.Errorf("reorderings seen = %d, want any: %v", reorders, tt.wantReorders)
			}
			if lossRate := float64(c.Lost) / float64(c.Sent); lossRate < tt.net.Loss*0.8 || lossRate > tt.net.Loss*1.2+0.001 {
				t.Errorf("loss rate %.3f, configured %.3f", lossRate, tt.net.Loss)
			}
			if c.Delivered+uint64(len(e.queue)) != c.Sent-c.Lost+c.Duplicated {
				t.Errorf("counters do not add up: %+v", c)
			}
			// 8 nodes, one ping per 100ms each, for ~30s
			if got < 1500 {
				t.Errorf("only %d pings delivered", got)
			}
		})
	}
}

func TestEnginePartitionHeals(t *testing.T) {
	t.Parallel()
	const n = 10
	group := make([]uint8, n)
	for i := n / 2; i < n; i++ {
		group[i] = 1
	}
	part := Partition{Start: 5 * time.Second, End: 15 * time.Second, Group: group}
	net := Network{RTTMin: 10 * time.Millisecond, RTTMax: 50 * time.Millisecond, Partitions: []Partition{part}}
	e, err := NewEngine(1, net, false)
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]*pinger, n)
	var crossedDuring, crossedAfter int
	for i := range ps {
		ps[i] = newPinger(i, n, 1, 50*time.Millisecond)
		ps[i].crossGroup = func(from int, now time.Time) bool {
			if group[from] == group[i] {
				return false
			}
			if d := now.Sub(Epoch); d >= part.Start && d < part.End {
				crossedDuring++
			} else if d >= part.End {
				crossedAfter++
			}
			return true
		}
		e.Add(ps[i])
		e.Poke(i)
	}
	e.Run(25 * time.Second)
	if crossedDuring != 0 {
		t.Errorf("%d datagrams crossed the partition while it was up", crossedDuring)
	}
	if crossedAfter == 0 {
		t.Error("no datagram crossed after the partition healed")
	}
	if e.Counters().Partitioned == 0 {
		t.Error("partition dropped nothing")
	}
}

func TestEngineFail(t *testing.T) {
	t.Parallel()
	e, err := NewEngine(2, Network{RTTMin: time.Millisecond, RTTMax: 5 * time.Millisecond}, false)
	if err != nil {
		t.Fatal(err)
	}
	ps := []*pinger{newPinger(0, 2, 2, 10*time.Millisecond), newPinger(1, 2, 2, 10*time.Millisecond)}
	for i, p := range ps {
		e.Add(p)
		e.Poke(i)
	}
	e.At(time.Second, func(time.Time) { e.Fail(1) })
	e.Run(2 * time.Second)
	before := ps[1].got
	e.Run(4 * time.Second)
	if ps[1].got != before {
		t.Errorf("failed node kept receiving: %d -> %d", before, ps[1].got)
	}
	if e.Alive(1) || !e.Alive(0) || e.Host(1) != nil {
		t.Error("liveness not tracked")
	}
	if c := e.Counters(); c.ToDead == 0 {
		t.Errorf("no datagram counted to the dead node: %+v", c)
	}
	if ns := e.Counters().NodeSeconds; ns < 4.9 || ns > 5.1 {
		t.Errorf("node-seconds = %.2f, want 5 (4 s + 1 s)", ns)
	}
}

// shifty is a host whose timer moves around arbitrarily; the engine must
// fire it exactly when due, never early, never twice for one deadline.
type shifty struct {
	rng       *rand.Rand
	next      time.Time
	fired     int
	early     int
	late      int
	lastFired time.Time
}

func (s *shifty) HandleTimer(now time.Time) {
	if s.next.IsZero() || now.Before(s.next) {
		s.early++
	}
	if now.After(s.next) && !s.next.IsZero() {
		s.late++
	}
	s.fired++
	s.lastFired = now
	s.move(now)
}

func (s *shifty) move(now time.Time) {
	switch s.rng.IntN(4) {
	case 0:
		s.next = time.Time{}
	default:
		s.next = now.Add(time.Duration(s.rng.IntN(1000)+1) * time.Millisecond)
	}
}

func (s *shifty) HandleDatagram(now time.Time, _ netip.AddrPort, _ []byte) { s.move(now) }
func (s *shifty) NextTimer() time.Time                                     { return s.next }
func (s *shifty) Flush(time.Time, func(netip.AddrPort, []byte))            {}

func TestEngineTimerHeap(t *testing.T) {
	t.Parallel()
	e, err := NewEngine(5, Network{}, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	hs := make([]*shifty, n)
	for i := range hs {
		hs[i] = &shifty{rng: rand.New(rand.NewPCG(5, uint64(i)))}
		hs[i].move(Epoch)
		e.Add(hs[i])
		e.Poke(i)
	}
	// External pokes move timers, as API calls do.
	rng := rand.New(rand.NewPCG(9, 9))
	var poke func(time.Time)
	poke = func(now time.Time) {
		i := rng.IntN(n)
		if e.Alive(i) {
			hs[i].move(now)
			e.Poke(i)
		}
		if rng.IntN(50) == 0 {
			e.Fail(rng.IntN(n))
		}
		e.After(time.Duration(rng.IntN(20)+1)*time.Millisecond, poke)
	}
	e.At(0, poke)
	e.Run(60 * time.Second)
	total := 0
	for i, h := range hs {
		if h.early > 0 || h.late > 0 {
			t.Errorf("host %d: %d early, %d late timer calls", i, h.early, h.late)
		}
		total += h.fired
		if e.Alive(i) && !h.next.IsZero() && h.next.Before(e.Now()) {
			t.Errorf("host %d: timer due at %v never fired (now %v)", i, h.next, e.Now())
		}
	}
	if total < 1000 {
		t.Errorf("only %d timers fired", total)
	}
	if len(e.timers) > n {
		t.Errorf("timer heap holds %d entries for %d hosts", len(e.timers), n)
	}
}

func TestNetworkValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		net  Network
		ok   bool
	}{
		{"zero", Network{}, true},
		{"rtt", Network{RTTMin: time.Millisecond, RTTMax: time.Second}, true},
		{"rtt reversed", Network{RTTMin: time.Second, RTTMax: time.Millisecond}, false},
		{"loss > 1", Network{Loss: 1.5}, false},
		{"negative dup", Network{Duplicate: -0.1}, false},
		{"negative delay", Network{ReorderDelay: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewEngine(1, tt.net, false)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadConfig) {
				t.Errorf("error %v is not ErrBadConfig", err)
			}
		})
	}
}

func TestEngineInterceptor(t *testing.T) {
	t.Parallel()
	var rewritten int
	net := Network{RTTMin: time.Millisecond, RTTMax: 2 * time.Millisecond,
		Intercept: func(_ time.Time, from, to int, data []byte) []byte {
			if from == 0 {
				return nil // node 0 is muted
			}
			if to == 0 && data[0] == 'P' {
				rewritten++
				out := append([]byte(nil), data...)
				out[1] = 0xff // forge the sequence number
				return out
			}
			return data
		}}
	e, ps := runPingers(t, 4, 3, net, 5*time.Second)
	if c := e.Counters(); c.Intercepted == 0 {
		t.Errorf("nothing intercepted: %+v", c)
	}
	for _, p := range ps[1:] {
		if _, ok := p.lastFrom[0]; ok {
			t.Errorf("node %d heard from muted node 0", p.self)
		}
	}
	if rewritten == 0 || ps[0].lastFrom[1] < 0xff000000 && ps[0].lastFrom[2] < 0xff000000 {
		t.Errorf("rewritten datagrams did not arrive as rewritten (%d rewritten)", rewritten)
	}
}

func TestEngineCallOrder(t *testing.T) {
	t.Parallel()
	e, err := NewEngine(1, Network{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i := range 5 {
		e.At(time.Second, func(time.Time) { got = append(got, i) })
	}
	e.At(500*time.Millisecond, func(now time.Time) {
		if now.Sub(Epoch) != 500*time.Millisecond {
			t.Errorf("call ran at %v", now.Sub(Epoch))
		}
		got = append(got, -1)
		e.After(500*time.Millisecond, func(time.Time) { got = append(got, 5) })
	})
	e.Run(0)
	want := []int{-1, 0, 1, 2, 3, 4, 5}
	if len(got) != len(want) {
		t.Fatalf("calls ran as %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("calls ran as %v, want %v", got, want)
		}
	}
	if e.Elapsed() != time.Second {
		t.Errorf("clock at %v after the last call, want 1s", e.Elapsed())
	}
}
