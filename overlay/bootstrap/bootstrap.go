package bootstrap

// Bootstrap providers: where a starting node finds the first peers to join
// through.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Provider finds seed addresses of nodes already in the overlay.
//
// Seeds may return addresses together with a non-nil error when some of its
// sources failed and others did not; the caller should use the addresses it
// got and report the error. Implementations must honour ctx and be safe for
// concurrent use. A provider for link-local discovery (multicast on a LAN
// with no seed) fits this interface: it would send a probe, collect answers
// until ctx is done or enough arrived, and return them.
type Provider interface {
	Seeds(ctx context.Context) ([]netip.AddrPort, error)
}

// Errors of the bootstrap providers.
var (
	// ErrBadSeed reports a seed entry that is not a valid host:port.
	ErrBadSeed = errors.New("bootstrap: bad seed address")
	// ErrNoSeeds reports a provider that found no address at all.
	ErrNoSeeds = errors.New("bootstrap: no seed addresses found")
)

// maxSeeds bounds how many addresses one provider returns, so a hostile DNS
// answer cannot make a node contact an unbounded list.
const maxSeeds = 64

// DefaultPort is the UDP port peername nodes listen on by default.
const DefaultPort = 3540

// Static is a fixed list of seeds, each "host:port" where host is an
// IP address or a DNS name (resolved on every call, so a seed that moves is
// followed) and port is a number or a service name. A missing port means
// DefaultPort. IPv6 literals are written in brackets: "[2001:db8::1]:3540".
type Static struct {
	Addrs []string
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Seeds resolves every entry. Entries that fail are reported in the error
// (wrapping ErrBadSeed or the resolver's error) while the others are still
// returned.
func (s Static) Seeds(ctx context.Context) ([]netip.AddrPort, error) {
	res := resolverOr(s.Resolver)
	var out []netip.AddrPort
	var errs []error
	for _, entry := range s.Addrs {
		aps, err := resolveSeed(ctx, res, entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = AppendSeeds(out, aps...)
	}
	if len(out) == 0 && len(s.Addrs) > 0 && len(errs) == 0 {
		errs = append(errs, ErrNoSeeds)
	}
	return out, errors.Join(errs...)
}

// resolveSeed turns one "host:port" entry into addresses.
func resolveSeed(ctx context.Context, res *net.Resolver, entry string) ([]netip.AddrPort, error) {
	entry = strings.TrimSpace(entry)
	if ap, err := netip.ParseAddrPort(entry); err == nil {
		return []netip.AddrPort{unmapAddrPort(ap)}, nil
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	} else if strings.Contains(entry, "]") || strings.Count(entry, ":") == 1 {
		return nil, fmt.Errorf("%w %q: %w", ErrBadSeed, entry, err)
	}
	if host == "" {
		return nil, fmt.Errorf("%w %q: empty host", ErrBadSeed, entry)
	}
	portNum := DefaultPort
	if port != "" {
		n, err := res.LookupPort(ctx, "udp", port)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w %q: port: %w", ErrBadSeed, entry, errOr(err, "zero"))
		}
		portNum = n
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" && !a.Is6() {
			return nil, fmt.Errorf("%w %q: zone on an IPv4 address", ErrBadSeed, entry)
		}
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), uint16(portNum))}, nil
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: resolve seed %q: %w", entry, err)
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(portNum)))
	}
	return out, nil
}

// DNSSRV finds seeds in the SRV records of _peername._udp.Domain,
// resolving each target to its IPv4 and IPv6 addresses. Targets come in the
// order RFC 2782 gives them (priority, then weighted random).
type DNSSRV struct {
	Domain string
	// Resolver does the lookups; nil means net.DefaultResolver. Tests and
	// operators with a private bootstrap server set Resolver.Dial.
	Resolver *net.Resolver
}

// SRV service and protocol labels of the bootstrap records.
const (
	srvService = "peername"
	srvProto   = "udp"
)

// Seeds looks up the SRV records and resolves their targets. A target that
// does not resolve is reported in the error while the others are returned.
func (s DNSSRV) Seeds(ctx context.Context) ([]netip.AddrPort, error) {
	domain := strings.TrimSuffix(strings.TrimSpace(s.Domain), ".")
	if domain == "" {
		return nil, fmt.Errorf("%w: empty SRV bootstrap domain", ErrBadSeed)
	}
	res := resolverOr(s.Resolver)
	_, srvs, err := res.LookupSRV(ctx, srvService, srvProto, domain)
	if err != nil && len(srvs) == 0 {
		return nil, fmt.Errorf("bootstrap: SRV bootstrap _%s._%s.%s: %w", srvService, srvProto, domain, err)
	}
	var errs []error
	if err != nil {
		// Go returns the valid records with an error for the others.
		errs = append(errs, fmt.Errorf("bootstrap: SRV bootstrap %s: %w", domain, err))
	}
	var out []netip.AddrPort
	for _, srv := range srvs {
		if len(out) >= maxSeeds {
			break
		}
		if srv.Target == "." || srv.Port == 0 {
			continue // RFC 2782: "." means the service is not offered there
		}
		target := strings.TrimSuffix(srv.Target, ".")
		var addrs []netip.Addr
		if a, perr := netip.ParseAddr(target); perr == nil {
			addrs = []netip.Addr{a}
		} else if addrs, err = res.LookupNetIP(ctx, "ip", target); err != nil {
			errs = append(errs, fmt.Errorf("bootstrap: SRV bootstrap target %s: %w", target, err))
			continue
		}
		for _, a := range addrs {
			out = AppendSeeds(out, netip.AddrPortFrom(a.Unmap(), srv.Port))
		}
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%w under _%s._%s.%s", ErrNoSeeds, srvService, srvProto, domain))
	}
	return out, errors.Join(errs...)
}

// Gather asks every provider in turn and merges their answers without
// duplicates. Errors are joined; addresses found are returned with them.
func Gather(ctx context.Context, bs []Provider) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []error
	for _, b := range bs {
		if b == nil {
			continue
		}
		aps, err := b.Seeds(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		out = AppendSeeds(out, aps...)
		if ctx.Err() != nil {
			break
		}
	}
	return out, errors.Join(errs...)
}

// AppendSeeds appends the valid addresses of aps that dst does not hold yet,
// up to maxSeeds.
func AppendSeeds(dst []netip.AddrPort, aps ...netip.AddrPort) []netip.AddrPort {
next:
	for _, ap := range aps {
		ap = unmapAddrPort(ap)
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() || len(dst) >= maxSeeds {
			continue
		}
		for _, have := range dst {
			if have == ap {
				continue next
			}
		}
		dst = append(dst, ap)
	}
	return dst
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func resolverOr(r *net.Resolver) *net.Resolver {
	if r != nil {
		return r
	}
	return net.DefaultResolver
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
