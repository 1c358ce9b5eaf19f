package integration

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Paths of the binaries TestMain builds once per test-binary run.
var bin struct {
	dir      string
	coredns  string
	peername string
}

// helperEnv makes the test binary act as a small helper program inside a
// network namespace ("ip netns exec NS TESTBINARY"), where the test process
// itself cannot reach: PEERNAME_INTEGRATION_HELPER=ready:URL exits 0 when
// the URL answers 200 OK.
const helperEnv = "PEERNAME_INTEGRATION_HELPER"

// corednsEnv names a prebuilt CoreDNS (with the peername plugin) to test
// instead of building ./cmd/coredns.
const corednsEnv = "PEERNAME_INTEGRATION_COREDNS"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode (the tests build and start real binaries)")
		os.Exit(0)
	}
	code, err := buildAndRun(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func buildAndRun(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "peername-integration-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin.dir = dir
	bin.coredns = filepath.Join(dir, "coredns")
	bin.peername = filepath.Join(dir, "peername")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		return 0, err
	}
	builds := []struct{ out, pkg string }{
		{bin.coredns, "./cmd/coredns"},
		{bin.peername, "./cmd/peername"},
	}
	if prebuilt := os.Getenv(corednsEnv); prebuilt != "" {
		// Test a CoreDNS built elsewhere (e.g. a release binary).
		bin.coredns = prebuilt
		builds = builds[1:]
	}
	for _, b := range builds {
		if err := goBuild(ctx, root, b.out, b.pkg); err != nil {
			return 0, err
		}
	}
	return m.Run(), nil
}

// goBuild builds pkg into out; with the race detector when this test binary
// has it, so that races in the servers under real traffic are caught too.
func goBuild(ctx context.Context, root, out, pkg string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	fmt.Fprintf(os.Stderr, "integration: built %s in %v\n", pkg, time.Since(start).Round(time.Millisecond))
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the peername module (go env GOMOD = %q)", mod)
	}
	return filepath.Dir(mod), nil
}

// goTool returns the go command that runs this test, falling back to PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func runHelper(h string) int {
	if q, ok := strings.CutPrefix(h, "dns:"); ok {
		return helperDNS(strings.Fields(q))
	}
	if q, ok := strings.CutPrefix(h, "names:"); ok {
		return helperNames(strings.Fields(q))
	}
	url, ok := strings.CutPrefix(h, "ready:")
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", h)
		return 2
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "%s: %s\n", resp.Status, bytes.TrimSpace(body))
		return 1
	}
	return 0
}

// helperDNS sends one query, args "NETWORK ADDR NAME TYPE", and prints
// "rcode=RCODE aa=BOOL" and then every answer record, one a line.
func helperDNS(args []string) int {
	if len(args) != 4 {
		fmt.Fprintf(os.Stderr, "dns helper: want NETWORK ADDR NAME TYPE, got %q\n", args)
		return 2
	}
	qtype, ok := dns.StringToType[args[3]]
	if !ok {
		fmt.Fprintf(os.Stderr, "dns helper: unknown type %q\n", args[3])
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := query(ctx, args[0], args[1], args[2], qtype)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("rcode=%s aa=%v\n", dns.RcodeToString[r.Rcode], r.Authoritative)
	for _, rr := range r.Answer {
		fmt.Println(rr.String())
	}
	return 0
}
