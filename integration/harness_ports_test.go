package integration

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestTakenPortDetected checks the harness's basis for retrying on new
// ports: a server whose DNS port another process holds exits, and
// waitListening says why.
func TestTakenPortDetected(t *testing.T) {
	t.Parallel()
	port := freePort(t, "127.0.0.1")
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, key := newKey(t, t.TempDir(), "k.key")
	s := launchServer(t, nodeSpec{Label: "taken", Cloud: "it-taken", KeyFile: key, DNSPort: port})
	if err := s.waitListening(30 * time.Second); !errors.Is(err, errPortInUse) {
		t.Fatalf("waitListening = %v, want errPortInUse; log:\n%s", err, s.logTail(20))
	}
}
