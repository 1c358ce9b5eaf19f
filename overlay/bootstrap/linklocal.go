package bootstrap

// Link-local discovery: a bootstrap provider for a LAN with no seed. A node
// that enables it (node.Config.LinkLocal) listens on a multicast group and
// answers probes from its own link; LinkLocal sends a probe to the
// group and collects the answers.
//
// Messages (one datagram each, version 1):
//
//	probe:  "PNLD" | 0x01 | 0x01 | cloud tag [8] | nonce [8] | zero padding to 64 bytes
//	answer: "PNLD" | 0x01 | 0x02 | cloud tag [8] | nonce [8]
//
// The cloud tag is the first 8 bytes of SHA-256("peername-discovery-v1\x00" ||
// cloud), so clouds sharing a LAN ignore each other. An answer echoes the
// probe's nonce and is smaller than the probe, is sent only to on-link
// sources (IPv6 link-local, loopback, or inside a prefix of the receiving
// interface) and at most linkLocalAnswerRate times a second, so a probe
// cannot be turned into a flood toward a spoofed address. Multicast leaves
// with TTL / hop limit 1 (the kernel's default), so nothing crosses a router.
// The answer leaves from the node's overlay socket, so its source address is
// the seed; what the seed is worth is then established by the core's
// authenticated handshake.

import (
	"github.com/peername/peername/overlay"

	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Default link-local discovery groups: 239.255.0.0/16 is the IPv4 local
// scope (RFC 2365), ff02::/16 the IPv6 link-local scope (RFC 4291); the
// group IDs spell "PN" and "peer".
var (
	DefaultLinkLocalGroup4 = netip.MustParseAddrPort("239.255.80.78:3541")
	DefaultLinkLocalGroup6 = netip.MustParseAddrPort("[ff02::7065:6572]:3541")
)

const (
	discoveryMagic      = "PNLD"
	discoveryVersion    = 1
	discoveryProbe      = 1
	discoveryAnswer     = 2
	discoveryProbeLen   = 64
	discoveryAnswerLen  = 4 + 1 + 1 + 8 + 8
	linkLocalAnswerRate = 20 // answers per second, burst as many
	defaultProbeWait    = time.Second
)

// ErrDiscovery reports a malformed link-local discovery datagram.
var ErrDiscovery = errors.New("bootstrap: malformed discovery datagram")

type discoveryMsg struct {
	typ   byte
	cloud [8]byte
	nonce [8]byte
}

func discoveryCloudTag(cloud string) [8]byte {
	if cloud == "" {
		cloud = overlay.DefaultCloud
	}
	h := sha256.Sum256(append([]byte("peername-discovery-v1\x00"), cloud...))
	return [8]byte(h[:8])
}

func (m discoveryMsg) encode() []byte {
	b := make([]byte, 0, discoveryProbeLen)
	b = append(b, discoveryMagic...)
	b = append(b, discoveryVersion, m.typ)
	b = append(b, m.cloud[:]...)
	b = append(b, m.nonce[:]...)
	if m.typ == discoveryAnswer {
		return b
	}
	return b[:discoveryProbeLen]
}

// decodeDiscovery parses a probe or an answer; it never panics.
func decodeDiscovery(b []byte) (discoveryMsg, error) {
	var m discoveryMsg
	if len(b) < 14+8 || string(b[:4]) != discoveryMagic {
		return m, fmt.Errorf("%w: bad magic or %d bytes", ErrDiscovery, len(b))
	}
	if b[4] != discoveryVersion {
		return m, fmt.Errorf("%w: version %d", ErrDiscovery, b[4])
	}
	m.typ = b[5]
	copy(m.cloud[:], b[6:14])
	copy(m.nonce[:], b[14:22])
	switch m.typ {
	case discoveryProbe:
		if len(b) != discoveryProbeLen || !allZero(b[22:]) {
			return m, fmt.Errorf("%w: probe of %d bytes", ErrDiscovery, len(b))
		}
	case discoveryAnswer:
		if len(b) != discoveryAnswerLen {
			return m, fmt.Errorf("%w: answer of %d bytes", ErrDiscovery, len(b))
		}
	default:
		return m, fmt.Errorf("%w: type %d", ErrDiscovery, m.typ)
	}
	return m, nil
}

func allZero(b []byte) bool {
	return bytes.Count(b, []byte{0}) == len(b)
}

// LinkLocal finds nodes of a cloud on the local link by multicast.
type LinkLocal struct {
	// Group is the multicast group and port; zero means DefaultLinkLocalGroup4.
	Group netip.AddrPort
	// Interface names the interface to probe on; empty lets the kernel pick
	// (the interface of the route to the group).
	Interface string
	// Cloud must match the cloud of the nodes sought; empty means overlay.DefaultCloud.
	Cloud string
	// Wait is how long answers are collected (default 1 s, bounded by ctx).
	Wait time.Duration
}

// Seeds sends one probe and returns the nodes that answered within Wait.
func (l LinkLocal) Seeds(ctx context.Context) ([]netip.AddrPort, error) {
	group := l.Group
	if !group.IsValid() {
		group = DefaultLinkLocalGroup4
	}
	if !group.Addr().IsMulticast() || group.Port() == 0 {
		return nil, fmt.Errorf("%w: %s is not a multicast group and port", ErrBadSeed, group)
	}
	wait := l.Wait
	if wait <= 0 {
		wait = defaultProbeWait
	}
	ifi, err := interfaceByName(l.Interface)
	if err != nil {
		return nil, err
	}
	network, laddr := "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if group.Addr().Is6() {
		network, laddr = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	if ifi != nil {
		// Probe from the interface's own address: answers go only to
		// on-link sources, and the kernel may otherwise pick none.
		if a, ok := interfaceAddr(ifi, group.Addr().Is6()); ok {
			laddr = netip.AddrPortFrom(a, 0)
		}
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, fmt.Errorf("bootstrap: link-local probe socket: %w", err)
	}
	defer c.Close()
	if ifi != nil {
		if err := setMulticastInterface(c, group, ifi); err != nil {
			return nil, err
		}
	}
	probe := discoveryMsg{typ: discoveryProbe, cloud: discoveryCloudTag(l.Cloud)}
	if _, err := rand.Read(probe.nonce[:]); err != nil {
		return nil, fmt.Errorf("bootstrap: link-local probe nonce: %w", err)
	}
	dst := group
	if group.Addr().Is6() && ifi != nil {
		dst = netip.AddrPortFrom(group.Addr().WithZone(ifi.Name), group.Port())
	}
	if _, err := c.WriteToUDPAddrPort(probe.encode(), dst); err != nil {
		return nil, fmt.Errorf("bootstrap: link-local probe to %s: %w", dst, err)
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("bootstrap: link-local probe: %w", err)
	}
	var out []netip.AddrPort
	buf := make([]byte, 512)
	for len(out) < maxSeeds {
		nr, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return out, fmt.Errorf("bootstrap: link-local probe: %w", context.Cause(ctx))
			}
			break // the wait is over
		}
		m, err := decodeDiscovery(buf[:nr])
		if err != nil || m.typ != discoveryAnswer || m.cloud != probe.cloud || m.nonce != probe.nonce {
			continue
		}
		out = AppendSeeds(out, unmapAddrPort(from))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: nobody answered on %s", ErrNoSeeds, group)
	}
	return out, nil
}

// LinkLocalConfig makes a node answer link-local discovery probes.
type LinkLocalConfig struct {
	// Groups to listen on; empty means DefaultLinkLocalGroup4 and, if the node
	// has an IPv6 socket, DefaultLinkLocalGroup6.
	Groups []netip.AddrPort
	// Interface names the interface to join the groups on; empty lets the
	// kernel pick.
	Interface string
}

func interfaceByName(name string) (*net.Interface, error) {
	if name == "" {
		return nil, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: link-local interface %q: %w", name, err)
	}
	return ifi, nil
}

// interfaceAddr returns an address of ifi of the wanted family, preferring
// an IPv6 link-local one (with its zone).
func interfaceAddr(ifi *net.Interface, v6 bool) (netip.Addr, bool) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	var found netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || ip.Unmap().Is4() == v6 {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			return ip.WithZone(ifi.Name), true
		}
		if !found.IsValid() {
			found = ip
		}
	}
	return found, found.IsValid()
}

func setMulticastInterface(c *net.UDPConn, group netip.AddrPort, ifi *net.Interface) error {
	var err error
	if group.Addr().Is4() {
		err = ipv4.NewPacketConn(c).SetMulticastInterface(ifi)
	} else {
		err = ipv6.NewPacketConn(c).SetMulticastInterface(ifi)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: multicast interface %s: %w", ifi.Name, err)
	}
	return nil
}

// Responder answers probes arriving on one multicast socket
// through the node's overlay socket of the same family.
// Responder answers link-local discovery probes on one multicast group, from
// the node's overlay socket (see ListenResponder).
type Responder struct {
	conn  *net.UDPConn // joined to the group
	reply *net.UDPConn // the node's overlay socket
	ifi   *net.Interface
	cloud [8]byte
	// token bucket for answers
	tokens float64
	last   time.Time
}

// onLink reports whether an answer may go to src: link-local, loopback, or
// inside a prefix of the interface the probe arrived on (of any interface
// when none was configured).
func (r *Responder) onLink(src netip.Addr) bool {
	src = src.Unmap()
	if src.IsLinkLocalUnicast() || src.IsLoopback() {
		return true
	}
	var addrs []net.Addr
	var err error
	if r.ifi != nil {
		addrs, err = r.ifi.Addrs()
	} else {
		addrs, err = net.InterfaceAddrs()
	}
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(ipn.String())
		if err == nil && p.Masked().Contains(src) {
			return true
		}
	}
	return false
}

// allow takes a token from the answer bucket.
func (r *Responder) allow(now time.Time) bool {
	if !r.last.IsZero() {
		r.tokens = min(linkLocalAnswerRate, r.tokens+now.Sub(r.last).Seconds()*linkLocalAnswerRate)
	}
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

// answer decides the reply to one datagram (nil: none).
func (r *Responder) answer(now time.Time, from netip.AddrPort, b []byte) []byte {
	m, err := decodeDiscovery(b)
	if err != nil || m.typ != discoveryProbe || m.cloud != r.cloud || !r.onLink(from.Addr()) || !r.allow(now) {
		return nil
	}
	return discoveryMsg{typ: discoveryAnswer, cloud: r.cloud, nonce: m.nonce}.encode()
}

// Serve answers probes until Close.
func (r *Responder) Serve() {
	buf := make([]byte, 512)
	failures := 0
	for {
		nr, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Discovery is best effort: a socket that keeps failing is
			// given up rather than spun on.
			if failures++; failures > 100 {
				return
			}
			continue
		}
		failures = 0
		if a := r.answer(time.Now(), from, buf[:nr]); a != nil {
			r.reply.WriteToUDPAddrPort(a, from)
		}
	}
}

// Close stops Serve.
func (r *Responder) Close() error { return r.conn.Close() }

// ListenResponder joins group (on interface ifname; empty lets the kernel
// pick) and returns a responder that answers probes for cloud from reply,
// the node's overlay socket, so seekers learn the overlay address.
func ListenResponder(group netip.AddrPort, ifname, cloud string, reply *net.UDPConn) (*Responder, error) {
	ifi, err := interfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	network := "udp4"
	if group.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenMulticastUDP(network, ifi, net.UDPAddrFromAddrPort(group))
	if err != nil {
		return nil, fmt.Errorf("bootstrap: link-local discovery on %s: %w", group, err)
	}
	r := &Responder{conn: c, reply: reply, ifi: ifi, cloud: discoveryCloudTag(cloud), tokens: linkLocalAnswerRate}
	return r, nil
}
