package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/overlay/node"
	"github.com/peername/peername/records"
)

func init() {
	register("resolve", command{"resolve a peer name over the overlay and print the verified record", runResolve})
}

// Errors of the resolve command; test for them with errors.Is.
var (
	errNotFound   = errors.New("not found")
	errNotJoined  = errors.New("could not join the cloud")
	errUnverified = errors.New("no record passed verification")
)

// seedList is a repeatable flag of seeds; each value may also hold several
// seeds separated by commas.
type seedList []string

func (s *seedList) String() string { return strings.Join(*s, ",") }

func (s *seedList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return errors.New("empty seed address")
		}
		*s = append(*s, part)
	}
	return nil
}

func runResolve(ctx context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "resolve", "-bootstrap ADDR [-bootstrap ADDR]... [-cloud NAME] [-timeout D] NAME",
		"Starts a temporary overlay node, joins the cloud through the bootstrap seeds and\n"+
			"looks NAME up on the overlay directly, without DNS. Every record found is\n"+
			"verified (signature, expiry, and that its key hashes to the authority in NAME)\n"+
			"and printed with the path the search took. NAME is a peer name such as\n"+
			"alice.<authority>.peer.alt, an unsecured name printer.0.peer.alt, or a service\n"+
			"name _ssh._tcp.alice.<authority>.peer.alt. Exits 1 if the name is not found.")
	var seeds seedList
	fset.Var(&seeds, "bootstrap", "seed node `ADDR`: IP:port, host:port, or dns:DOMAIN for the SRV records of _peername._udp.DOMAIN (repeatable, or comma-separated)")
	cloud := fset.String("cloud", "global", "`NAME` of the cloud to join")
	timeout := fset.Duration("timeout", 10*time.Second, "give up after `D` (joining and searching together)")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the names live under")
	listen := fset.String("listen", "", "local overlay UDP `ADDR` (default 127.0.0.1:0 for loopback seeds, else 0.0.0.0:0 and/or [::]:0)")
	jsonOut := fset.Bool("json", false, "print the result as one JSON object")
	verbose := fset.Bool("v", false, "log the temporary node's activity on stderr")
	puzzle := fset.Int("puzzle", overlay.DefaultPuzzleBits, fmt.Sprintf("the cloud's identity puzzle difficulty in `BITS`, 0 (none) to %d: the node solves it before joining (~0.2 s at the default) and refuses peers below it", overlay.MaxPuzzleBits))
	mode := fset.String("mode", "client", "the temporary node's overlay `MODE`: client (in no routing table, stores nothing for others: it lives for one command), auto or server")
	stateDir := fset.String("state", "", "keep the node's state in `DIR` (its key, routing snapshot and records), so later runs rejoin through the peers it knew, without -bootstrap")
	pos, err := parseArgs(fset, args, 1, 1)
	if err != nil {
		return err
	}
	if len(seeds) == 0 && *stateDir == "" {
		fmt.Fprintln(fset.Output(), "peername resolve: at least one -bootstrap seed (or a -state directory from an earlier run) is needed to reach a cloud")
		fset.Usage()
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(fset.Output(), "peername resolve: -timeout must be positive")
		return errUsage
	}
	if *puzzle < 0 || *puzzle > overlay.MaxPuzzleBits {
		fmt.Fprintf(fset.Output(), "peername resolve: -puzzle must be 0 to %d bits\n", overlay.MaxPuzzleBits)
		return errUsage
	}
	if *puzzle == 0 {
		*puzzle = -1 // no puzzle (a node's 0 is its default)
	}
	nodeMode, err := overlay.ParseMode(*mode)
	if err != nil || *mode == "" {
		fmt.Fprintf(fset.Output(), "peername resolve: -mode must be auto, server or client, not %q\n", *mode)
		return errUsage
	}
	z, err := canonicalZone(*zone)
	if err != nil {
		return err
	}
	q, err := parseQuery(pos[0], z)
	if err != nil {
		return err
	}
	boots, err := bootstrappers(seeds)
	if err != nil {
		return err
	}
	var listenAddrs []netip.AddrPort
	if *listen != "" {
		ap, err := netip.ParseAddrPort(*listen)
		if err != nil {
			return fmt.Errorf("-listen %q: %w", *listen, err)
		}
		listenAddrs = []netip.AddrPort{ap}
	} else if len(seeds) == 0 {
		// Only saved peers to go by: they may be anywhere.
		listenAddrs = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}
	} else {
		listenAddrs = listenFor(seeds)
	}

	var id *identity.Identity
	if *stateDir != "" {
		// The state is bound to one node identity: keep its key beside it.
		if err := os.MkdirAll(*stateDir, 0o700); err != nil {
			return fmt.Errorf("-state: %w", err)
		}
		if id, _, err = identity.LoadOrCreate(filepath.Join(*stateDir, "resolve.key")); err != nil {
			return fmt.Errorf("-state: %w", err)
		}
	} else {
		r := e.rand
		if r == nil {
			r = rand.Reader
		}
		if id, err = identity.Generate(r); err != nil {
			return err
		}
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	node, err := node.New(node.Config{
		Identity:  id,
		Listen:    listenAddrs,
		Bootstrap: boots,
		Cloud:     *cloud,
		Logger:    logger,
		StateDir:  *stateDir,
		Core:      overlay.Config{PuzzleBits: *puzzle, Mode: nodeMode},
	})
	if err != nil {
		return err
	}
	// The identity puzzle is CPU work (and none at all with a -state
	// directory that kept its solution): -timeout bounds joining and
	// searching, not it.
	if err := node.Prepare(ctx); err != nil {
		return fmt.Errorf("join cloud %q: %w", *cloud, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("join cloud %q: %w", *cloud, err)
	}
	defer node.Close()
	if why := node.NetStats().AloneReason; why != "" {
		via := seeds.String()
		if via == "" {
			via = "the peers saved in " + *stateDir
		}
		return fmt.Errorf("cloud %q via %s: %s: %w", *cloud, via, why, errNotJoined)
	}

	recs, path, err := node.Resolve(ctx, q.name.Key())
	if err != nil {
		if errors.Is(err, overlay.ErrNotFound) {
			return fmt.Errorf("%s: %w (%s): %w", q.fqdn, errNotFound, describePath(path), err)
		}
		return fmt.Errorf("%s: %w", q.fqdn, err)
	}
	verified, err := verifyRecords(recs, q.name, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", q.fqdn, err)
	}
	if q.service != "" {
		verified = withService(verified, q.service, q.proto)
		if len(verified) == 0 {
			return fmt.Errorf("%s: %w: the name exists but publishes no _%s._%s service", q.fqdn, errNotFound, q.service, q.proto)
		}
	}
	if *jsonOut {
		return printJSON(e.stdout, q, verified, path)
	}
	printText(e.stdout, q, verified, path)
	return nil
}

// resolveQuery is a parsed NAME argument.
type resolveQuery struct {
	fqdn           string
	name           identity.Name
	service, proto string // set for a service name
	zone           string
}

func parseQuery(s, zone string) (resolveQuery, error) {
	fqdn := strings.ToLower(s)
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	q := resolveQuery{fqdn: fqdn, zone: zone}
	if strings.HasPrefix(fqdn, "_") {
		svc, proto, n, err := identity.ParseServiceName(fqdn, zone)
		if err != nil {
			return q, fmt.Errorf("%s: %w", s, err)
		}
		q.service, q.proto, q.name = svc, proto, n
		return q, nil
	}
	n, err := identity.ParseName(fqdn, zone)
	if err != nil {
		return q, fmt.Errorf("%s: %w", s, err)
	}
	q.name = n
	return q, nil
}

// bootstrappers turns the -bootstrap values into providers: the dns: ones
// each become an SRV provider, the rest one static list.
func bootstrappers(seeds []string) ([]bootstrap.Provider, error) {
	var static []string
	var out []bootstrap.Provider
	for _, s := range seeds {
		if d, ok := strings.CutPrefix(s, "dns:"); ok {
			if d == "" {
				return nil, fmt.Errorf("-bootstrap %q: empty domain: %w", s, bootstrap.ErrBadSeed)
			}
			out = append(out, bootstrap.DNSSRV{Domain: d})
			continue
		}
		static = append(static, s)
	}
	if len(static) > 0 {
		out = append(out, bootstrap.Static{Addrs: static})
	}
	return out, nil
}

// listenFor picks the temporary node's sockets from the seeds: loopback only
// when every seed is a loopback literal (so nothing is exposed), otherwise
// wildcard sockets of the families the seeds need.
func listenFor(seeds []string) []netip.AddrPort {
	var v4, v6, loop4, loop6, other int
	for _, s := range seeds {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			other++ // a host name or SRV domain: either family
			continue
		}
		a := ap.Addr().Unmap()
		switch {
		case a.Is4() && a.IsLoopback():
			loop4++
		case a.Is4():
			v4++
		case a.IsLoopback():
			loop6++
		default:
			v6++
		}
	}
	switch {
	case other == 0 && v4 == 0 && v6 == 0 && loop6 == 0:
		return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	case other == 0 && v4 == 0 && v6 == 0 && loop4 == 0:
		return []netip.AddrPort{netip.MustParseAddrPort("[::1]:0")}
	}
	var out []netip.AddrPort
	if other > 0 || v4 > 0 || loop4 > 0 {
		out = append(out, netip.MustParseAddrPort("0.0.0.0:0"))
	}
	if other > 0 || v6 > 0 || loop6 > 0 {
		out = append(out, netip.MustParseAddrPort("[::]:0"))
	}
	return out
}

// verifyRecords checks each record again, as any resolver must: the
// signature and lifetime (records.Verify), that it is a record of the name
// asked for, and for a secured name that its key hashes to the authority in
// the name. It returns the records that pass, or errUnverified.
func verifyRecords(recs []*records.Record, want identity.Name, now time.Time) ([]*records.Record, error) {
	var ok []*records.Record
	var errs []error
	for _, r := range recs {
		if err := verifyRecord(r, want, now); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		if len(errs) == 0 {
			return nil, fmt.Errorf("%w: the overlay returned no record", errNotFound)
		}
		return nil, fmt.Errorf("%w: %w", errUnverified, errors.Join(errs...))
	}
	return ok, nil
}

func verifyRecord(r *records.Record, want identity.Name, now time.Time) error {
	if err := records.Verify(r, now); err != nil {
		return err
	}
	if r.Name != want {
		return fmt.Errorf("record is for %s, not %s: %w", r.Name, want, records.ErrAuthorityMismatch)
	}
	if want.Secured && identity.AuthorityOf(r.PublicKey) != want.Authority {
		return fmt.Errorf("record key hashes to %s, not %s: %w", identity.AuthorityOf(r.PublicKey), want.Authority, records.ErrAuthorityMismatch)
	}
	if r.Withdrawn {
		return fmt.Errorf("name withdrawn by its owner: %w", errNotFound)
	}
	return nil
}

// withService keeps the records that publish the service, and only that
// service in them.
func withService(recs []*records.Record, service, proto string) []*records.Record {
	var out []*records.Record
	for _, r := range recs {
		var svcs []records.Service
		for _, s := range r.Services {
			if s.Service == service && s.Proto == proto {
				svcs = append(svcs, s)
			}
		}
		if len(svcs) > 0 {
			c := *r
			c.Services = svcs
			out = append(out, &c)
		}
	}
	return out
}

func describePath(p overlay.Path) string {
	return fmt.Sprintf("hops %d, asked %d, timeouts %d", p.Hops, p.Asked, p.Timeouts)
}

func printText(w io.Writer, q resolveQuery, recs []*records.Record, path overlay.Path) {
	for i, r := range recs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "name      %s\n", r.Name.DNS(q.zone))
		fmt.Fprintf(w, "authority %s (record key verified)\n", identity.AuthorityOf(r.PublicKey))
		fmt.Fprintf(w, "publisher %s\n", hex.EncodeToString(r.PublicKey))
		fmt.Fprintf(w, "seq       %d\n", r.Seq)
		fmt.Fprintf(w, "issued    %s\n", r.Issued.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "expires   %s (in %s)\n", r.Expires.UTC().Format(time.RFC3339), time.Until(r.Expires).Round(time.Second))
		for _, a := range r.Endpoints {
			fmt.Fprintf(w, "address   %s\n", a)
		}
		for _, s := range r.Services {
			fmt.Fprintf(w, "service   _%s._%s port %d priority %d weight %d\n", s.Service, s.Proto, s.Port, s.Priority, s.Weight)
		}
		for _, t := range r.TXT {
			fmt.Fprintf(w, "txt       %q\n", t)
		}
		if len(r.Payload) > 0 {
			fmt.Fprintf(w, "payload   %d bytes\n", len(r.Payload))
		}
	}
	fmt.Fprintf(w, "\npath      %s\n", describePath(path))
	for i, n := range path.Nodes {
		fmt.Fprintf(w, "  hop %-3d %s\n", i+1, n)
	}
}

// jsonRecord is the -json form of a record.
type jsonRecord struct {
	Name      string        `json:"name"`
	Authority string        `json:"authority"`
	PublicKey string        `json:"public_key"`
	Seq       uint64        `json:"seq"`
	Issued    time.Time     `json:"issued"`
	Expires   time.Time     `json:"expires"`
	Addresses []netip.Addr  `json:"addresses"`
	Services  []jsonService `json:"services,omitempty"`
	TXT       []string      `json:"txt,omitempty"`
	Payload   []byte        `json:"payload,omitempty"`
}

type jsonService struct {
	Service  string `json:"service"`
	Proto    string `json:"proto"`
	Port     uint16 `json:"port"`
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
}

type jsonPath struct {
	Hops     int      `json:"hops"`
	Asked    int      `json:"asked"`
	Timeouts int      `json:"timeouts"`
	Nodes    []string `json:"nodes"`
}

func printJSON(w io.Writer, q resolveQuery, recs []*records.Record, path overlay.Path) error {
	out := struct {
		Query   string       `json:"query"`
		Records []jsonRecord `json:"records"`
		Path    jsonPath     `json:"path"`
	}{Query: q.fqdn, Path: jsonPath{Hops: path.Hops, Asked: path.Asked, Timeouts: path.Timeouts, Nodes: []string{}}}
	for _, n := range path.Nodes {
		out.Path.Nodes = append(out.Path.Nodes, n.String())
	}
	for _, r := range recs {
		jr := jsonRecord{
			Name: r.Name.DNS(q.zone), Authority: identity.AuthorityOf(r.PublicKey).String(),
			PublicKey: hex.EncodeToString(r.PublicKey), Seq: r.Seq, Issued: r.Issued.UTC(), Expires: r.Expires.UTC(),
			Addresses: append([]netip.Addr{}, r.Endpoints...), TXT: r.TXT, Payload: r.Payload,
		}
		for _, s := range r.Services {
			jr.Services = append(jr.Services, jsonService(s))
		}
		out.Records = append(out.Records, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
