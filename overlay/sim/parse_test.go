package sim

import (
	"errors"
	"testing"
	"time"
)

func TestParseRTT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		lo, hi time.Duration
		ok     bool
	}{
		{"20ms:200ms", 20 * time.Millisecond, 200 * time.Millisecond, true},
		{"50ms", 50 * time.Millisecond, 50 * time.Millisecond, true},
		{"0s:1s", 0, time.Second, true},
		{"200ms:20ms", 0, 0, false},
		{"-1ms:2ms", 0, 0, false},
		{"abc", 0, 0, false},
		{"1ms:", 0, 0, false},
		{"1ms:2h", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			lo, hi, err := ParseRTT(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadFlag) {
				t.Errorf("error %v is not ErrBadFlag", err)
			}
			if lo != tt.lo || hi != tt.hi {
				t.Errorf("got %v:%v, want %v:%v", lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

func TestParsePartition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{"10s:20s:0.5", true},
		{"10s:0s:0.3", true},
		{"10s:5s:0.5", false},
		{"10s:20s:1", false},
		{"10s:20s:0", false},
		{"10s:20s", false},
		{"x:20s:0.5", false},
		{"10s:20s:0.5:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			p, err := ParsePartition(tt.in, 1, 1000)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadFlag) {
					t.Errorf("error %v is not ErrBadFlag", err)
				}
				return
			}
			ones := 0
			for _, g := range p.Group {
				ones += int(g)
			}
			if ones == 0 || ones == len(p.Group) {
				t.Errorf("partition does not split: %d of %d on one side", ones, len(p.Group))
			}
		})
	}
}

func TestReplayArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-nodes", "10", "-seed", "5"}, "-nodes 10 -seed 7"},
		{[]string{"-seed=5", "-json"}, "-json -seed 7"},
		{nil, "-seed 7"},
	}
	for _, tt := range tests {
		if got := ReplayArgs(tt.args, 7); got != tt.want {
			t.Errorf("ReplayArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func FuzzParseRTT(f *testing.F) {
	for _, s := range []string{"20ms:200ms", "50ms", "1s:1s", "a:b", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseRTT(s)
		if err != nil {
			if !errors.Is(err, ErrBadFlag) {
				t.Fatalf("error %v is not ErrBadFlag", err)
			}
			return
		}
		if lo < 0 || hi < lo {
			t.Fatalf("ParseRTT(%q) = %v:%v", s, lo, hi)
		}
		if _, err := NewEngine(1, Network{RTTMin: lo, RTTMax: hi}, false); err != nil {
			t.Fatalf("accepted RTT %v:%v refused by the engine: %v", lo, hi, err)
		}
	})
}

func FuzzParsePartition(f *testing.F) {
	for _, s := range []string{"10s:20s:0.5", "0s:0s:0.1", "1s:2s:1e-3", "::", "1s:2s:NaN", "1s:2s:0.5:"} {
		f.Add(s, uint16(100))
	}
	f.Fuzz(func(t *testing.T, s string, n uint16) {
		p, err := ParsePartition(s, 3, int(n))
		if err != nil {
			if !errors.Is(err, ErrBadFlag) {
				t.Fatalf("error %v is not ErrBadFlag", err)
			}
			return
		}
		if len(p.Group) != int(n) || p.Start < 0 || (p.End != 0 && p.End <= p.Start) {
			t.Fatalf("ParsePartition(%q) = %+v", s, p)
		}
	})
}
