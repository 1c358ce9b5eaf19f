package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peername test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestDoTAndDoH serves the peername zone over DNS over TLS (tls://) and DNS
// over HTTPS (https://) from the same overlay node, and resolves a peer name
// through each with real clients: dig +tls, dig +https, and curl fetching a
// page from the peer by name with --doh-url.
func TestDoTAndDoH(t *testing.T) {
	t.Parallel()
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install bind9-dnsutils)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	cert, certKey := selfSigned(t, dir)

	// The peer's web page, on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "served by the peer")
	})}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close() })
	webPort := ln.Addr().(*net.TCPAddr).Port

	id, key := newKey(t, dir, "doh.key")
	name := securedName(t, id, "web")
	overlay := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t, "127.0.0.1")))
	dotPort, dohPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	block := func(scheme string, port int) string {
		return fmt.Sprintf("%s://%s:%d {\n    bind 127.0.0.1\n    tls %s %s\n    peername %s {\n        identity %s\n        listen %s\n        cloud it-doh\n        ttl 1\n    }\n}\n",
			scheme, zone, port, cert, certKey, zone, key, overlay)
	}
	s := startServer(t, nodeSpec{Label: "doh", Cloud: "it-doh", KeyFile: key, Overlay: overlay, TTL: 1,
		Publish: []string{"web 127.0.0.1"}, ExtraZones: block("tls", dotPort) + block("https", dohPort)})
	if err := s.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	short := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, dig, append([]string{"@127.0.0.1", "+short", "+tries=1", "+time=5"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, tc := range []struct{ via, flag, port string }{
		{"DoT", "+tls", fmt.Sprint(dotPort)},
		{"DoH", "+https", fmt.Sprint(dohPort)},
	} {
		err := eventually(ctx, func(context.Context) error {
			got, err := short("-p", tc.port, tc.flag, name, "A")
			if err != nil || got != "127.0.0.1" {
				return fmt.Errorf("dig %s %s A: %q %v: %w", tc.flag, name, got, err, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", tc.via, err)
		}
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Log("curl not installed: the DoH page fetch is skipped")
		return
	}
	url := fmt.Sprintf("http://%s:%d/", strings.TrimSuffix(name, "."), webPort)
	out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "--doh-insecure",
		"--doh-url", fmt.Sprintf("https://127.0.0.1:%d/dns-query", dohPort), url).CombinedOutput()
	if err != nil || string(out) != "served by the peer\n" {
		t.Errorf("curl --doh-url ... %s: %v\n%s", url, err, out)
	}
}
