package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

func init() {
	register("register", command{"register a name at a node by DNS UPDATE while the app runs", runRegister})
}

// registration is what one `peername register` keeps registered.
type registration struct {
	server string
	zone   string
	name   string // FQDN
	key    tsigKey
	lease  time.Duration
	ttl    uint32
	rrs    []dns.RR
}

// ErrRefused is wrapped by the error of an UPDATE the server refused.
var ErrRefused = errors.New("update refused")

func runRegister(ctx context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "register", "-server ADDR -key FILE [-lease D] [-addr IP]... [-service SVC/PROTO/PORT]... [-txt S]... NAME",
		"Registers NAME (CLASSIFIER.AUTHORITY.ZONE of the node's authority, or\n"+
			"CLASSIFIER.0.ZONE) with the addresses, services and TXT strings given, by an\n"+
			"RFC 2136 UPDATE signed with the TSIG key in FILE (BIND's format: tsig-keygen\n"+
			"or peername keygen -tsig), at the peername node whose DNS server is ADDR. It\n"+
			"renews the registration's lease (RFC 9664) while it runs and deletes the name\n"+
			"on SIGINT or SIGTERM, so the name lives as long as the application: run it\n"+
			"from the application's start script. Exits 1 with the server's reason if the\n"+
			"UPDATE is refused.")
	server := fset.String("server", "127.0.0.1:53", "the node's DNS server `ADDR` (host:port)")
	keyFile := fset.String("key", "", "the TSIG key `FILE`")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the names live under")
	lease := fset.Duration("lease", 2*time.Minute, "lease asked of the server; renewed at half of what it grants")
	ttl := fset.Uint("ttl", 60, "TTL of the records in the UPDATE, in seconds")
	var addrs, services, txts stringList
	fset.Var(&addrs, "addr", "an IP address of NAME (repeatable)")
	fset.Var(&services, "service", "a service of NAME as SVC/PROTO/PORT, e.g. ssh/tcp/22 (repeatable)")
	fset.Var(&txts, "txt", "a TXT string of NAME (repeatable)")
	pos, err := parseArgs(fset, args, 1, 1)
	if err != nil {
		return err
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(fset.Output(), "peername register: "+format+"\n", a...)
		return errUsage
	}
	if *keyFile == "" {
		return usage("-key FILE is needed: the node accepts only signed UPDATEs")
	}
	if *lease < time.Second {
		return usage("-lease %s is too short", *lease)
	}
	if _, _, err := net.SplitHostPort(*server); err != nil {
		return usage("-server %q: %v", *server, err)
	}
	key, err := loadTSIGKey(*keyFile)
	if err != nil {
		return err
	}
	reg := &registration{server: *server, zone: dns.CanonicalName(*zone), name: dns.CanonicalName(pos[0]),
		key: key, lease: *lease, ttl: uint32(*ttl)}
	if !dns.IsSubDomain(reg.zone, reg.name) || reg.name == reg.zone {
		return usage("%s is not a name under %s", reg.name, reg.zone)
	}
	if err := reg.build(addrs, services, txts); err != nil {
		return usage("%v", err)
	}
	granted, err := reg.send(ctx, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "registered %s at %s (lease %s); Ctrl-C or SIGTERM deletes it\n", reg.name, reg.server, granted)
	for {
		wait := max(granted/2, time.Second)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := reg.send(dctx, true); err != nil {
				return fmt.Errorf("deleting %s: %w", reg.name, err)
			}
			fmt.Fprintf(e.stdout, "deleted %s\n", reg.name)
			return nil
		case <-time.After(wait):
		}
		g, err := reg.send(ctx, false)
		switch {
		case err == nil:
			granted = g
		case ctx.Err() != nil:
			// stopping: the deletion follows
		case errors.Is(err, ErrRefused):
			return fmt.Errorf("renewing %s: %w", reg.name, err)
		default:
			// A lost renewal is retried sooner; the lease still runs.
			fmt.Fprintf(e.stderr, "peername register: renewing %s: %v; retrying\n", reg.name, err)
			granted = max(granted/2, 2*time.Second)
		}
	}
}

// build turns the flags into the records to register.
func (r *registration) build(addrs, services, txts []string) error {
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: r.ttl}
	}
	for _, list := range addrs {
		for _, a := range strings.Split(list, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				return fmt.Errorf("-addr %q: not an IP address", a)
			}
			if ip.Unmap().Is4() {
				r.rrs = append(r.rrs, &dns.A{Hdr: hdr(r.name, dns.TypeA), A: ip.Unmap().AsSlice()})
			} else {
				r.rrs = append(r.rrs, &dns.AAAA{Hdr: hdr(r.name, dns.TypeAAAA), AAAA: ip.AsSlice()})
			}
		}
	}
	for _, s := range services {
		parts := strings.Split(s, "/")
		if len(parts) != 3 {
			return fmt.Errorf("-service %q: want SVC/PROTO/PORT", s)
		}
		port, err := strconv.ParseUint(parts[2], 10, 16)
		if err != nil || port == 0 {
			return fmt.Errorf("-service %q: bad port", s)
		}
		owner := "_" + parts[0] + "._" + parts[1] + "." + r.name
		r.rrs = append(r.rrs, &dns.SRV{Hdr: hdr(owner, dns.TypeSRV), Port: uint16(port), Target: r.name})
	}
	if len(txts) > 0 {
		r.rrs = append(r.rrs, &dns.TXT{Hdr: hdr(r.name, dns.TypeTXT), Txt: txts})
	}
	if len(r.rrs) == 0 {
		return errors.New("nothing to register: give -addr, -service or -txt")
	}
	return nil
}

// send sends the registration (or, with del, its deletion) and returns the
// lease the server granted.
func (r *registration) send(ctx context.Context, del bool) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetUpdate(r.zone)
	if del {
		owners := map[string]bool{}
		for _, rr := range r.rrs {
			owners[rr.Header().Name] = true
		}
		for _, rr := range r.rrs {
			if owners[rr.Header().Name] {
				delete(owners, rr.Header().Name)
				m.RemoveName([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: rr.Header().Name, Rrtype: dns.TypeANY, Class: dns.ClassANY}}})
			}
		}
	} else {
		m.Insert(r.rrs)
		o := new(dns.OPT)
		o.Hdr.Name, o.Hdr.Rrtype = ".", dns.TypeOPT
		o.SetUDPSize(dns.DefaultMsgSize)
		secs := uint32(r.lease / time.Second)
		o.Option = append(o.Option, &dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: secs, KeyLease: secs})
		m.Extra = append(m.Extra, o)
	}
	m.SetTsig(r.key.Name, r.key.Algorithm, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second, TsigSecret: map[string]string{r.key.Name: r.key.Secret}}
	resp, _, err := c.ExchangeContext(ctx, m, r.server)
	if err != nil {
		return 0, fmt.Errorf("update at %s: %w", r.server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("%w by %s: %s", ErrRefused, r.server, dns.RcodeToString[resp.Rcode])
	}
	granted := r.lease
	if o := resp.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if ul, ok := e.(*dns.EDNS0_UL); ok && ul.Lease > 0 {
				granted = time.Duration(ul.Lease) * time.Second
			}
		}
	}
	return granted, nil
}
