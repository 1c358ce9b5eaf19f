package overlay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// TestStoredRecordServable: a stored record (verified when stored) is
// served within its time window only: not once it has expired, and not
// while the node's clock is set back so far that it looks issued in the
// future.
func TestStoredRecordServable(t *testing.T) {
	t.Parallel()
	id := testIdentity(94)
	name, err := identity.NewSecuredName("www", id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r := &records.Record{Name: name, Seq: 1, Issued: epoch, Expires: epoch.Add(time.Hour),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	if err := records.Sign(r, id); err != nil {
		t.Fatal(err)
	}
	enc, err := records.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Identity: id}
	if err := cfg.ApplyDefaults(); err != nil {
		t.Fatal(err)
	}
	st := newRecordStore(&cfg)
	if res := st.put(epoch.UnixNano(), name.Key(), enc, netip.Addr{}); res.status != storeOK {
		t.Fatalf("put: %d %v", res.status, res.err)
	}
	srs := st.get(name.Key(), epoch.UnixNano())
	if len(srs) != 1 {
		t.Fatalf("get: %d records", len(srs))
	}
	sr := srs[0]
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{epoch, true},
		{epoch.Add(59 * time.Minute), true},
		{epoch.Add(time.Hour), false},                           // expired
		{epoch.Add(-records.MaxClockSkew), true},                // clock a little behind
		{epoch.Add(-records.MaxClockSkew - time.Second), false}, // issued "in the future"
	} {
		if got := sr.servable(tc.at.UnixNano()); got != tc.want {
			t.Errorf("servable at %v: %v, want %v (records.Verify: %v)", tc.at.Sub(epoch), got, tc.want, records.Verify(sr.rec, tc.at))
		}
	}
}
