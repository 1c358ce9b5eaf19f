package node

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var fragEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testMessage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFragmentRoundTrip(t *testing.T) {
	t.Parallel()
	src := netip.MustParseAddrPort("192.0.2.1:3540")
	tests := []struct {
		name        string
		size        int
		maxDatagram int
		order       string // "in", "reverse", "shuffle", "dup"
		wantFrags   int
	}{
		{"one byte", 1, 1200, "in", 1},
		{"fits exactly", 1199, 1200, "in", 1},
		{"one over", 1200, 1200, "in", 2},
		{"4 KiB payload record", 4700, 1200, "in", 4},
		{"reverse order", 4700, 1200, "reverse", 4},
		{"shuffled", 20000, 1200, "shuffle", 17},
		{"duplicated", 5000, 1200, "dup", 5},
		{"64 KiB", defaultMaxMessage, 1200, "shuffle", 56},
		{"small datagrams", 3000, minMaxDatagram, "shuffle", 47},
		{"max fragments", 255 * (200 - fragHeaderLen), 200, "shuffle", 255},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := testMessage(tt.size, uint64(tt.size))
			f := newFragmenter(tt.maxDatagram, 0, 7)
			ds, err := f.split(msg)
			if err != nil {
				t.Fatalf("split(%d bytes): %v", tt.size, err)
			}
			if len(ds) != tt.wantFrags {
				t.Fatalf("split gave %d datagrams, want %d", len(ds), tt.wantFrags)
			}
			for i, d := range ds {
				if len(d) > tt.maxDatagram {
					t.Fatalf("datagram %d is %d bytes, limit %d", i, len(d), tt.maxDatagram)
				}
			}
			order := make([]int, len(ds))
			for i := range order {
				order[i] = i
			}
			switch tt.order {
			case "reverse":
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			case "shuffle":
				rand.New(rand.NewPCG(uint64(tt.size), 2)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			case "dup":
				dup := make([]int, 0, 2*len(order))
				for _, i := range order {
					dup = append(dup, i, i)
				}
				order = dup
			}
			r := newReassembler(reasmConfig{maxMessage: defaultMaxMessage})
			var got []byte
			for n, i := range order {
				out, err := r.add(fragEpoch, src, ds[i])
				if err != nil {
					t.Fatalf("add fragment %d: %v", i, err)
				}
				if out != nil {
					if got != nil {
						t.Fatalf("message completed twice (second time at datagram %d)", n)
					}
					got = out
				}
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("reassembled %d bytes, want the %d sent", len(got), len(msg))
			}
			if len(r.msgs) != 0 || r.buffered != 0 || len(r.bySource) != 0 {
				t.Fatalf("state left after completion: %d msgs, %d bytes, %d sources", len(r.msgs), r.buffered, len(r.bySource))
			}
			if tt.order == "dup" && tt.wantFrags > 1 && r.stats.Duplicates == 0 {
				t.Fatal("duplicates were not counted")
			}
		})
	}
}

func TestFragmentSplitRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		size        int
		maxDatagram int
		maxMessage  int
		want        error
	}{
		{"empty", 0, 1200, 0, ErrFrame},
		{"over max message", defaultMaxMessage + 1, 1200, 0, ErrMessageTooLarge},
		{"over custom max", 101, 1200, 100, ErrMessageTooLarge},
		{"too many fragments", 256 * (300 - fragHeaderLen), 300, 1 << 20, ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFragmenter(tt.maxDatagram, tt.maxMessage, 0)
			if _, err := f.split(make([]byte, tt.size)); !errors.Is(err, tt.want) {
				t.Fatalf("split(%d bytes) error = %v, want %v", tt.size, err, tt.want)
			}
		})
	}
}

func TestFragmentIDsAdvance(t *testing.T) {
	t.Parallel()
	f := newFragmenter(1200, 0, 0xFFFFFFFF)
	a, _ := f.split(make([]byte, 3000))
	b, _ := f.split(make([]byte, 3000))
	fa, _ := decodeFrame(a[0])
	fb, _ := decodeFrame(b[0])
	if fa.msgID != 0xFFFFFFFF || fb.msgID != 0 {
		t.Fatalf("message IDs %d, %d; want 4294967295 then 0 (wrap)", fa.msgID, fb.msgID)
	}
}

func fragHeader(id uint32, index, count int, total uint32) []byte {
	return []byte{frameFragment, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id), byte(index), byte(count),
		byte(total >> 24), byte(total >> 16), byte(total >> 8), byte(total)}
}

func TestDecodeFrameRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"whole without message", []byte{frameWhole}},
		{"unknown kind", []byte{0x12, 1, 2, 3}},
		{"version 0", []byte{0x00, 1, 2, 3}},
		{"short fragment header", fragHeader(1, 0, 2, 10)[:7]},
		{"header without data", fragHeader(1, 0, 2, 10)},
		{"count 0", append(fragHeader(1, 0, 0, 10), 1)},
		{"count 1", append(fragHeader(1, 0, 1, 10), 1)},
		{"index = count", append(fragHeader(1, 2, 2, 10), 1)},
		{"total below count", append(fragHeader(1, 0, 3, 2), 1)},
		{"data over total", append(fragHeader(1, 0, 2, 2), 1, 2, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeFrame(tt.in); !errors.Is(err, ErrFrame) {
				t.Fatalf("decodeFrame(%x) error = %v, want ErrFrame", tt.in, err)
			}
		})
	}
}

func TestReassemblerLossExpires(t *testing.T) {
	t.Parallel()
	src := netip.MustParseAddrPort("[2001:db8::1]:3540")
	f := newFragmenter(1200, 0, 1)
	ds, _ := f.split(testMessage(4000, 3))
	r := newReassembler(reasmConfig{expiry: 2 * time.Second})
	for i, d := range ds {
		if i == 1 {
			continue // lost
		}
		if out, err := r.add(fragEpoch.Add(time.Duration(i)*time.Millisecond), src, d); out != nil || err != nil {
			t.Fatalf("add(%d) = %d bytes, %v; want nothing yet", i, len(out), err)
		}
	}
	if got, want := r.nextExpiry(), fragEpoch.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("nextExpiry = %v, want %v", got, want)
	}
	r.expire(fragEpoch.Add(2*time.Second - time.Nanosecond))
	if len(r.msgs) != 1 {
		t.Fatal("partial message expired before its deadline")
	}
	r.expire(fragEpoch.Add(2 * time.Second))
	if len(r.msgs) != 0 || r.buffered != 0 || r.stats.Expired != 1 || !r.nextExpiry().IsZero() {
		t.Fatalf("after expiry: %d msgs, %d bytes, %d expired", len(r.msgs), r.buffered, r.stats.Expired)
	}
	// The late fragment alone starts a new partial message; it never completes.
	if out, _ := r.add(fragEpoch.Add(3*time.Second), src, ds[1]); out != nil {
		t.Fatal("late fragment completed a message whose other fragments expired")
	}
}

func TestReassemblerBounds(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("192.0.2.2:1")
	first := func(id uint32, total int) []byte {
		return append(fragHeader(id, 0, 2, uint32(total)), make([]byte, total/2)...)
	}
	tests := []struct {
		name    string
		cfg     reasmConfig
		feed    []netip.AddrPort // one first fragment per entry, IDs 1, 2, ...
		size    int
		want    []reasmKey // in flight afterwards, oldest first
		evicted uint64
	}{
		{
			name: "per source",
			cfg:  reasmConfig{maxPerSource: 2},
			feed: []netip.AddrPort{a, b, a, a},
			size: 100,
			want: []reasmKey{{b, 2}, {a, 3}, {a, 4}}, evicted: 1,
		},
		{
			name: "in flight total",
			cfg:  reasmConfig{maxInFlight: 3},
			feed: []netip.AddrPort{a, b, a, b, a},
			size: 100,
			want: []reasmKey{{b, 4}, {a, 5}, {a, 3}}, evicted: 2,
		},
		{
			name: "buffered bytes",
			cfg:  reasmConfig{maxBuffered: 250},
			feed: []netip.AddrPort{a, b, a},
			size: 200, // 100 bytes held per message
			want: []reasmKey{{b, 2}, {a, 3}}, evicted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newReassembler(tt.cfg)
			for i, src := range tt.feed {
				if out, err := r.add(fragEpoch, src, first(uint32(i+1), tt.size)); out != nil || err != nil {
					t.Fatalf("add %d: %d bytes, %v", i, len(out), err)
				}
			}
			got := r.inFlight()
			if len(got) != len(tt.want) {
				t.Fatalf("in flight %v, want %v", got, tt.want)
			}
			held := map[reasmKey]bool{}
			for _, k := range got {
				held[k] = true
			}
			for _, k := range tt.want {
				if !held[k] {
					t.Fatalf("in flight %v, want %v", got, tt.want)
				}
			}
			if r.stats.Evicted != tt.evicted {
				t.Fatalf("evicted %d, want %d", r.stats.Evicted, tt.evicted)
			}
			if r.buffered > r.cfg.maxBuffered || len(r.msgs) > r.cfg.maxInFlight {
				t.Fatalf("bounds broken: %d bytes, %d msgs", r.buffered, len(r.msgs))
			}
		})
	}
}

func TestReassemblerRefuses(t *testing.T) {
	t.Parallel()
	src := netip.MustParseAddrPort("192.0.2.1:1")
	tests := []struct {
		name  string
		cfg   reasmConfig
		first []byte
		next  []byte
		want  error
	}{
		{"whole over max message", reasmConfig{maxMessage: 10}, nil, append([]byte{frameWhole}, make([]byte, 11)...), ErrMessageTooLarge},
		{"fragment over max message", reasmConfig{maxMessage: 10}, nil, append(fragHeader(1, 0, 2, 11), 1), ErrMessageTooLarge},
		{"count disagrees", reasmConfig{}, append(fragHeader(1, 0, 2, 10), 1), append(fragHeader(1, 1, 3, 10), 1), ErrFrame},
		{"total disagrees", reasmConfig{}, append(fragHeader(1, 0, 2, 10), 1), append(fragHeader(1, 1, 2, 12), 1), ErrFrame},
		{"fragments exceed total", reasmConfig{}, append(fragHeader(1, 0, 2, 4), 1, 2, 3), append(fragHeader(1, 1, 2, 4), 1, 2), ErrFrame},
		{"fragments short of total", reasmConfig{}, append(fragHeader(1, 0, 2, 10), 1, 2), append(fragHeader(1, 1, 2, 10), 1, 2), ErrFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newReassembler(tt.cfg)
			if tt.first != nil {
				if _, err := r.add(fragEpoch, src, tt.first); err != nil {
					t.Fatalf("first fragment: %v", err)
				}
			}
			out, err := r.add(fragEpoch, src, tt.next)
			if !errors.Is(err, tt.want) || out != nil {
				t.Fatalf("add = %d bytes, %v; want error %v", len(out), err, tt.want)
			}
			if len(r.msgs) != 0 || r.buffered != 0 {
				t.Fatalf("refused message left state: %d msgs, %d bytes", len(r.msgs), r.buffered)
			}
		})
	}
}

func TestReassemblerSeparatesSources(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("192.0.2.1:2")
	// Same message ID from two sources must not mix.
	ma, mb := testMessage(3000, 1), testMessage(3000, 2)
	da, _ := newFragmenter(1200, 0, 9).split(ma)
	db, _ := newFragmenter(1200, 0, 9).split(mb)
	r := newReassembler(reasmConfig{})
	var got [2][]byte
	for i := range da {
		if out, err := r.add(fragEpoch, a, da[i]); err != nil {
			t.Fatal(err)
		} else if out != nil {
			got[0] = out
		}
		if out, err := r.add(fragEpoch, b, db[i]); err != nil {
			t.Fatal(err)
		} else if out != nil {
			got[1] = out
		}
	}
	if !bytes.Equal(got[0], ma) || !bytes.Equal(got[1], mb) {
		t.Fatal("messages with the same ID from two sources were mixed")
	}
}

func BenchmarkFragmentRoundTrip(b *testing.B) {
	src := netip.MustParseAddrPort("192.0.2.1:1")
	msg := testMessage(4700, 1)
	f := newFragmenter(1200, 0, 0)
	r := newReassembler(reasmConfig{})
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		ds, err := f.split(msg)
		if err != nil {
			b.Fatal(err)
		}
		var out []byte
		for _, d := range ds {
			if out, err = r.add(fragEpoch, src, d); err != nil {
				b.Fatal(err)
			}
		}
		if len(out) != len(msg) {
			b.Fatal("not reassembled")
		}
	}
}

// FuzzDecodeFrame checks that the frame decoder never panics and that what
// it accepts is consistent.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte{frameWhole, 'h', 'i'})
	f.Add(append(fragHeader(1, 0, 2, 3), 1, 2))
	f.Add(append(fragHeader(1, 1, 2, 3), 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("error %v does not wrap ErrFrame", err)
			}
			return
		}
		if len(fr.data) == 0 || len(fr.data) > fr.total || fr.index >= fr.count || fr.count > maxFragments {
			t.Fatalf("accepted inconsistent frame %+v", fr)
		}
	})
}

// FuzzReassemble feeds arbitrary datagrams (split on 0xff 0xfe) from two
// sources through a small reassembler and checks its bounds after each.
func FuzzReassemble(f *testing.F) {
	ds, _ := newFragmenter(minMaxDatagram, 0, 5).split(testMessage(300, 4))
	f.Add(bytes.Join(ds, []byte{0xff, 0xfe}))
	f.Add(append(append(fragHeader(1, 0, 2, 4), 1, 2, 0xff, 0xfe), append(fragHeader(1, 1, 2, 4), 3, 4)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := reasmConfig{maxMessage: 4096, maxPerSource: 2, maxInFlight: 3, maxBuffered: 2048, expiry: time.Second}
		r := newReassembler(cfg)
		srcs := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::1]:1")}
		for i, d := range bytes.Split(in, []byte{0xff, 0xfe}) {
			now := fragEpoch.Add(time.Duration(i) * 100 * time.Millisecond)
			out, err := r.add(now, srcs[i/2%2], d)
			if err != nil && out != nil {
				t.Fatal("returned a message with an error")
			}
			if len(out) > cfg.maxMessage {
				t.Fatalf("reassembled %d bytes, limit %d", len(out), cfg.maxMessage)
			}
			if r.buffered > cfg.maxBuffered || len(r.msgs) > cfg.maxInFlight || r.buffered < 0 {
				t.Fatalf("bounds broken: %d bytes, %d messages", r.buffered, len(r.msgs))
			}
			for src, n := range r.bySource {
				if n > cfg.maxPerSource || n <= 0 {
					t.Fatalf("%d messages from %s", n, src)
				}
			}
		}
	})
}
