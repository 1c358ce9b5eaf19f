package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

// zone is the peer-name zone every test server answers.
const zone = identity.DefaultZone

// portMu and portsTaken keep one test binary from handing the same port to
// two servers; the kernel picks ports other processes are not bound to.
var (
	portMu     sync.Mutex
	portsTaken = map[int]bool{}
)

// freePort returns a port on host that is free for both UDP and TCP right
// now (a DNS server needs both).
func freePort(t testing.TB, host string) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 100 {
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		if portsTaken[port] {
			continue
		}
		portsTaken[port] = true
		return port
	}
	t.Fatal("free port: no port free for both UDP and TCP after 100 tries")
	return 0
}

// nodeSpec describes one CoreDNS server with the peername plugin.
type nodeSpec struct {
	Label      string           // for logs: "node1"
	Host       string           // address the DNS server binds; "127.0.0.1" by default
	DNSPort    int              // 0 = pick a free port
	Overlay    netip.AddrPort   // overlay listen address; zero = Host with a free port
	Bootstrap  []netip.AddrPort // seeds; none = first node of the cloud
	Cloud      string
	KeyFile    string   // written by the test (so the authority is known in advance)
	Publish    []string // "classifier [IP...]" lines
	Unsecured  []string // publish_unsecured lines
	TTL        int      // answer TTL in seconds; 0 = plugin default
	Timeout    string   // search timeout; "" = plugin default
	Lifetime   string   // lifetime of the records the node signs; "" = plugin default
	Extra      []string // more lines for the peername block (srv, txt, ...)
	Plugins    []string // more plugins for the server block, before peername (tsig {...})
	ExtraZones string   // more server blocks (e.g. a hosts zone for the benchmark)
	NetNS      string   // run inside this network namespace
}

var corefileTmpl = template.Must(template.New("Corefile").Parse(`.:{{.DNSPort}} {
    bind {{.Host}}
    errors
    ready {{.ReadyAddr}}
{{- range .Plugins}}
    {{.}}
{{- end}}
    peername {{.Zone}} {
        identity {{.KeyFile}}
        listen {{.Overlay}}
{{- if .Bootstrap}}
        bootstrap{{range .Bootstrap}} {{.}}{{end}}
{{- end}}
{{- if .Cloud}}
        cloud {{.Cloud}}
{{- end}}
{{- range .Publish}}
        publish {{.}}
{{- end}}
{{- range .Unsecured}}
        publish_unsecured {{.}}
{{- end}}
{{- if .TTL}}
        ttl {{.TTL}}
{{- end}}
{{- if .Timeout}}
        timeout {{.Timeout}}
{{- end}}
{{- if .Lifetime}}
        lifetime {{.Lifetime}}
{{- end}}
{{- range .Extra}}
        {{.}}
{{- end}}
    }
}
{{.ExtraZones}}
`))

// server is a running CoreDNS process.
type server struct {
	spec      nodeSpec
	dnsAddr   string // host:port of the DNS server
	readyAddr string
	readyURL  string
	corefile  string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	exitState *os.ProcessState
	waitErr   error
}

// startServer writes the Corefile for spec and starts CoreDNS. On loopback
// it waits until the DNS port answers (CoreDNS binds the overlay socket and
// joins in OnStartup, before it listens for DNS), and if another process
// took one of the free ports picked for it in the meantime, it starts again
// on new ports. It does not wait for readiness (see waitReady). The process
// is stopped when the test ends, and its log is printed if the test failed.
func startServer(t testing.TB, spec nodeSpec) *server {
	t.Helper()
	auto := spec.NetNS == "" && spec.DNSPort == 0 && !spec.Overlay.IsValid()
	for attempt := 1; ; attempt++ {
		s := launchServer(t, spec)
		if spec.NetNS != "" {
			return s
		}
		err := s.waitListening(60 * time.Second)
		if !errors.Is(err, errPortInUse) || !auto || attempt == 3 {
			return s
		}
		t.Logf("%s: a port picked for it was taken by another process; starting again on new ports", spec.Label)
	}
}

// errPortInUse reports a server that exited because a port was taken.
var errPortInUse = errors.New("address already in use")

// waitListening waits until the server answers a DNS query (any answer),
// exits, or the timeout passes; only an exit for a taken port is an error.
func (s *server) waitListening(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := query(qctx, "udp", s.dnsAddr, zone, dns.TypeSOA)
		qcancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			if b, _ := os.ReadFile(s.logPath); bytes.Contains(b, []byte("address already in use")) {
				return errPortInUse
			}
			return nil // waitReady reports the exit with the log
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// launchServer picks the ports spec leaves open, writes the Corefile and
// starts the process.
func launchServer(t testing.TB, spec nodeSpec) *server {
	t.Helper()
	if spec.Host == "" {
		spec.Host = "127.0.0.1"
	}
	if spec.DNSPort == 0 {
		spec.DNSPort = freePort(t, spec.Host)
	}
	hostAddr := netip.MustParseAddr(spec.Host)
	if !spec.Overlay.IsValid() {
		spec.Overlay = netip.AddrPortFrom(hostAddr, uint16(freePort(t, spec.Host)))
	}
	readyPort := 8181
	if spec.NetNS == "" {
		readyPort = freePort(t, spec.Host)
	}
	dir := t.TempDir()
	readyAddr := net.JoinHostPort(spec.Host, fmt.Sprint(readyPort))
	s := &server{
		spec:      spec,
		readyAddr: readyAddr,
		dnsAddr:   net.JoinHostPort(spec.Host, fmt.Sprint(spec.DNSPort)),
		readyURL:  "http://" + readyAddr + "/ready",
		corefile:  filepath.Join(dir, "Corefile"),
		logPath:   filepath.Join(dir, "coredns.log"),
		exited:    make(chan struct{}),
	}
	corefile := s.writeCorefile(t, spec)
	s.start(t, dir, corefile)
	return s
}

// start runs CoreDNS on s.corefile in dir (inside s.spec.NetNS if set),
// and registers its stop, the log checks and, on failure, the printing of
// corefile and the log.
func (s *server) start(t testing.TB, dir, corefile string) {
	t.Helper()
	spec := s.spec
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{bin.coredns, "-conf", s.corefile}
	if spec.NetNS != "" {
		args = append([]string{"ip", "netns", "exec", spec.NetNS}, args...)
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Dir = dir
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", spec.Label, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		s.exitState = s.cmd.ProcessState
		logf.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if bad := s.logProblems(); bad != "" {
			t.Errorf("%s logged %s", spec.Label, bad)
		}
		if t.Failed() {
			t.Logf("=== %s Corefile:\n%s=== %s log (last 60 lines):\n%s", spec.Label, corefile, spec.Label, s.logTail(60))
		}
	})
}

// writeCorefile renders the Corefile for spec (whose ports are already
// chosen) to the server's path and returns it.
func (s *server) writeCorefile(t testing.TB, spec nodeSpec) string {
	t.Helper()
	var buf bytes.Buffer
	err := corefileTmpl.Execute(&buf, struct {
		nodeSpec
		Zone, ReadyAddr string
	}{spec, zone, s.readyAddr})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.corefile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// reload rewrites the Corefile with what spec changes (ports and key stay)
// and sends SIGUSR1, on which CoreDNS re-reads it and restarts its servers
// in-process.
func (s *server) reload(t testing.TB, change func(*nodeSpec)) {
	t.Helper()
	spec := s.spec
	change(&spec)
	s.writeCorefile(t, spec)
	s.spec = spec
	if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("SIGUSR1 %s: %v", spec.Label, err)
	}
}

// stop ends the process: SIGTERM (CoreDNS shuts down gracefully and the
// plugin unpublishes), then SIGKILL if it has not exited within 10 s.
func (s *server) stop() {
	if s.alive() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			return
		case <-time.After(10 * time.Second):
		}
		_ = s.cmd.Process.Kill()
	}
	<-s.exited
}

// kill sends SIGKILL: the node dies without leaving or unpublishing.
func (s *server) kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", s.spec.Label, err)
	}
	<-s.exited
}

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// logProblems reports what in the server's log means a bug even when every
// answer was right: a data race found by the race detector, a panic, or a
// panic CoreDNS recovered from while serving a query.
func (s *server) logProblems() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "Recovered from panic"} {
		if bytes.Contains(b, []byte(bad)) {
			return fmt.Sprintf("%q", bad)
		}
	}
	return ""
}

func (s *server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// waitReady polls the ready plugin until it reports 200 OK, the process
// exits, or ctx ends.
func (s *server) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var err error
		if s.spec.NetNS != "" {
			err = s.readyInNetNS(ctx)
		} else if resp, gerr := client.Get(s.readyURL); gerr != nil {
			err = gerr
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("ready: %s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", s.spec.Label, s.waitErr, s.logTail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", s.spec.Label, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// readyInNetNS asks the ready endpoint from inside the server's namespace,
// running this test binary there as a helper.
func (s *server) readyInNetNS(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.spec.NetNS, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=ready:"+s.readyURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ready in %s: %w: %s", s.spec.NetNS, err, bytes.TrimSpace(out))
	}
	return nil
}

// waitDNS polls with an apex SOA query until the server answers.
func (s *server) waitDNS(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := query(ctx, "udp", s.dnsAddr, zone, dns.TypeSOA)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", s.spec.Label, s.waitErr, s.logTail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not answering: %w (last: %v)", s.spec.Label, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// overlayAddr is where other nodes bootstrap from.
func (s *server) overlayAddr() netip.AddrPort { return s.spec.Overlay }

// query sends one question to addr over network ("udp" or "tcp").
func query(ctx context.Context, network, addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s @%s: %w", network, name, dns.TypeToString[qtype], addr, err)
	}
	return r, nil
}

// errNotYet marks a check that may pass later (a record not yet replicated).
var errNotYet = errors.New("not yet")

// eventually runs check until it returns nil or ctx ends; it returns the
// last error seen before the deadline (not the one the deadline itself
// caused by cutting a query short). Only errors wrapping errNotYet are
// retried.
func eventually(ctx context.Context, check func(ctx context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		err := check(ctx)
		if err == nil || !errors.Is(err, errNotYet) {
			return err
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up: %w", last)
		case <-tick.C:
		}
	}
}

// newKey writes a fresh identity key file in dir and returns it with its path.
func newKey(t testing.TB, dir, file string) (*identity.Identity, string) {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, file)
	if err := id.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	return id, path
}

// mustKeyID loads the identity in a key file written by newKey.
func mustKeyID(t testing.TB, path string) *identity.Identity {
	t.Helper()
	id, err := identity.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// securedName returns the DNS name under which id publishes classifier.
func securedName(t testing.TB, id *identity.Identity, classifier string) string {
	t.Helper()
	n, err := identity.NewSecuredName(classifier, id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return n.DNS(zone)
}

// addrsOf returns the A or AAAA addresses in the answer section.
func addrsOf(r *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				out = append(out, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// hasSOA reports whether the authority section carries the zone's SOA.
func hasSOA(r *dns.Msg) bool {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, zone) {
			return true
		}
	}
	return false
}

func itoa(i int) string { return fmt.Sprint(i) }
