package node

import (
	"errors"
	"testing"

	"github.com/peername/peername/overlay/sim"
)

// TestFragmentsMatchDriver: the simulator loses a message's fragments one
// by one (sim.Network.MaxDatagram); it must cut messages into as many
// datagrams as the driver's fragmenter does, at the driver's size.
func TestFragmentsMatchDriver(t *testing.T) {
	t.Parallel()
	if sim.DefaultMaxDatagram != DefaultMaxDatagram {
		t.Fatalf("sim.DefaultMaxDatagram %d, the driver's %d", sim.DefaultMaxDatagram, DefaultMaxDatagram)
	}
	for _, maxDatagram := range []int{minMaxDatagram, 576, DefaultMaxDatagram, 1472} {
		f := newFragmenter(maxDatagram, defaultMaxMessage, 1)
		for _, n := range []int{1, 100, maxDatagram - 2, maxDatagram - 1, maxDatagram, maxDatagram + 1, 2 * maxDatagram, 4096, 4096 + 512, 16 << 10} {
			ds, err := f.split(make([]byte, n))
			if errors.Is(err, ErrMessageTooLarge) {
				continue // the driver refuses it (over 255 fragments); the core's messages are far smaller
			}
			if err != nil {
				t.Fatalf("split(%d bytes, datagram %d): %v", n, maxDatagram, err)
			}
			if got := sim.Fragments(n, maxDatagram); got != len(ds) {
				t.Errorf("%d bytes in datagrams of %d: simulator %d, driver %d", n, maxDatagram, got, len(ds))
			}
		}
	}
}
