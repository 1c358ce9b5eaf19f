package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/peername/peername/internal/testutil"
)

func TestDNSSRVBootstrap(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range maxSeeds + 10 {
		many = append(many, fmt.Sprintf("_peername._udp.many.test. 60 IN SRV 10 10 %d seed1.example.test.", 1000+i))
	}
	td := testutil.NewDNS(t, append(many,
		"_peername._udp.example.test. 60 IN SRV 20 10 4000 seed2.example.test.",
		"_peername._udp.example.test. 60 IN SRV 10 10 3540 seed1.example.test.",
		"seed1.example.test. 60 IN A 127.0.0.11",
		"seed1.example.test. 60 IN AAAA ::1",
		"seed2.example.test. 60 IN A 127.0.0.12",
		"_peername._udp.partial.test. 60 IN SRV 10 10 3540 gone.example.test.",
		"_peername._udp.partial.test. 60 IN SRV 20 10 4000 seed2.example.test.",
		"_peername._udp.dot.test. 60 IN SRV 0 0 0 .",
		"_peername._udp.unresolvable.test. 60 IN SRV 0 0 3540 gone.example.test.",
	)...)
	tests := []struct {
		name      string
		domain    string
		want      []string // any order
		last      string   // the lowest-priority seed, which must come last
		wantCount int      // when want is nil
		wantErr   bool
		errIs     error
	}{
		{name: "priority order, both families", domain: "example.test", want: []string{"127.0.0.11:3540", "[::1]:3540", "127.0.0.12:4000"}, last: "127.0.0.12:4000"},
		{name: "trailing dot", domain: "example.test.", want: []string{"127.0.0.11:3540", "[::1]:3540", "127.0.0.12:4000"}, last: "127.0.0.12:4000"},
		{name: "one target gone", domain: "partial.test", want: []string{"127.0.0.12:4000"}, wantErr: true},
		{name: "service not offered", domain: "dot.test", errIs: ErrNoSeeds, wantErr: true},
		{name: "no SRV records", domain: "missing.test", wantErr: true},
		{name: "only target gone", domain: "unresolvable.test", wantErr: true},
		{name: "bounded", domain: "many.test", wantCount: maxSeeds},
		{name: "empty domain", domain: " ", errIs: ErrBadSeed, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DNSSRV{Domain: tt.domain, Resolver: td.Resolver}.Seeds(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Seeds error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Fatalf("Seeds error = %v, want %v", err, tt.errIs)
			}
			if tt.want == nil {
				if len(got) != tt.wantCount {
					t.Fatalf("Seeds = %d addresses, want %d", len(got), tt.wantCount)
				}
				return
			}
			gs := addrStrings(got)
			if tt.last != "" && gs[len(gs)-1] != tt.last {
				t.Fatalf("Seeds = %v, want %s last (highest priority value)", gs, tt.last)
			}
			if !sameSet(gs, tt.want) {
				t.Fatalf("Seeds = %v, want %v", gs, tt.want)
			}
		})
	}
}

func TestDNSSRVBootstrapNotFoundIsDNSError(t *testing.T) {
	t.Parallel()
	td := testutil.NewDNS(t, "seed1.example.test. 60 IN A 127.0.0.11")
	_, err := DNSSRV{Domain: "missing.test", Resolver: td.Resolver}.Seeds(t.Context())
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("Seeds error = %v, want a not-found *net.DNSError", err)
	}
}

func TestDNSSRVBootstrapHonoursContext(t *testing.T) {
	t.Parallel()
	td := testutil.NewDNS(t, "_peername._udp.example.test. 60 IN SRV 10 10 3540 seed1.example.test.")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got, err := (DNSSRV{Domain: "example.test", Resolver: td.Resolver}).Seeds(ctx); err == nil || len(got) != 0 {
		t.Fatalf("Seeds with a cancelled context = %v, %v; want an error", got, err)
	}
}

func TestStaticBootstrap(t *testing.T) {
	t.Parallel()
	td := testutil.NewDNS(t,
		"seed1.example.test. 60 IN A 127.0.0.11",
		"seed1.example.test. 60 IN AAAA ::1",
	)
	tests := []struct {
		name    string
		addrs   []string
		want    []string
		errIs   error
		wantErr bool
	}{
		{name: "literals", addrs: []string{"127.0.0.1:3540", "[::1]:4000", " 10.0.0.1:1 "}, want: []string{"127.0.0.1:3540", "[::1]:4000", "10.0.0.1:1"}},
		{name: "default port", addrs: []string{"127.0.0.1", "2001:db8::1", "127.0.0.2:"}, want: []string{"127.0.0.1:3540", "[2001:db8::1]:3540", "127.0.0.2:3540"}},
		{name: "mapped IPv4 unmapped", addrs: []string{"[::ffff:192.0.2.1]:9"}, want: []string{"192.0.2.1:9"}},
		{name: "duplicates removed", addrs: []string{"127.0.0.1:1", "127.0.0.1:1", "[::ffff:127.0.0.1]:1"}, want: []string{"127.0.0.1:1"}},
		{name: "host name", addrs: []string{"seed1.example.test:5000"}, want: []string{"127.0.0.11:5000", "[::1]:5000"}},
		{name: "zero port skipped", addrs: []string{"127.0.0.1:0"}, errIs: ErrNoSeeds, wantErr: true},
		{name: "bad port", addrs: []string{"127.0.0.1:99999", "127.0.0.3:7"}, want: []string{"127.0.0.3:7"}, errIs: ErrBadSeed, wantErr: true},
		{name: "bad port name", addrs: []string{"seed1.example.test:no-such-service"}, errIs: ErrBadSeed, wantErr: true},
		{name: "bracket without port", addrs: []string{"[::1]"}, errIs: ErrBadSeed, wantErr: true},
		{name: "empty host", addrs: []string{":3540"}, errIs: ErrBadSeed, wantErr: true},
		{name: "unknown host", addrs: []string{"gone.example.test:1", "127.0.0.1:2"}, want: []string{"127.0.0.1:2"}, wantErr: true},
		{name: "none configured", addrs: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Static{Addrs: tt.addrs, Resolver: td.Resolver}.Seeds(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Seeds error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Fatalf("Seeds error = %v, want %v", err, tt.errIs)
			}
			if gs := addrStrings(got); !sameSet(gs, tt.want) {
				t.Fatalf("Seeds = %v, want %v", gs, tt.want)
			}
		})
	}
}

func TestGatherSeeds(t *testing.T) {
	t.Parallel()
	bad := Static{Addrs: []string{"[::1]"}}
	a := Static{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}
	b := Static{Addrs: []string{"127.0.0.1:2", "[::1]:3"}}
	got, err := Gather(t.Context(), []Provider{a, nil, bad, b})
	if !errors.Is(err, ErrBadSeed) {
		t.Fatalf("Gather error = %v, want ErrBadSeed from the bad provider", err)
	}
	if gs, want := addrStrings(got), []string{"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"}; !slices.Equal(gs, want) {
		t.Fatalf("Gather = %v, want %v", gs, want)
	}
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func addrStrings(aps []netip.AddrPort) []string {
	var out []string
	for _, ap := range aps {
		out = append(out, ap.String())
	}
	return out
}
