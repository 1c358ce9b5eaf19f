package overlay

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

func persistTemplate(t *testing.T, tn *testNode, classifier string) *records.Record {
	t.Helper()
	n, err := identity.NewSecuredName(classifier, tn.ident.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return &records.Record{Name: n, Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
}

func TestPublishAboveFloor(t *testing.T) {
	t.Parallel()
	clock := uint64(epoch.UnixMilli())
	tests := []struct {
		name  string
		floor uint64
		want  func(seq uint64) bool
	}{
		{"no floor: the clock decides", 0, func(s uint64) bool { return s >= clock && s < clock+1e6 }},
		{"floor below the clock", 5, func(s uint64) bool { return s >= clock && s < clock+1e6 }},
		{"floor above the clock (a restarted owner whose clock was ahead)", clock + 1e9, func(s uint64) bool { return s == clock+1e9+1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			net := newTestNet(t)
			net.build(3, nil)
			tn := net.nodes[1]
			op := tn.core.PublishAbove(net.now, persistTemplate(t, tn, "web"), tc.floor)
			c := net.wait(tn, op, time.Minute)
			if c.Err != nil || len(c.Records) == 0 {
				t.Fatalf("publish: %v", c.Err)
			}
			if seq := c.Records[0].Seq; !tc.want(seq) || seq <= tc.floor {
				t.Errorf("seq %d with floor %d (clock %d ms)", seq, tc.floor, clock)
			}
			// What the core reports as its own highest Seq is what it signed.
			if got := tn.core.OwnSeq(c.Records[0].Name); got != c.Records[0].Seq {
				t.Errorf("OwnSeq %d, want %d", got, c.Records[0].Seq)
			}
		})
	}
}

func TestCorePersistAccessors(t *testing.T) {
	t.Parallel()
	net := newTestNet(t)
	net.build(3, nil)
	a, b := net.nodes[0], net.nodes[1]
	pa := net.wait(a, a.core.Publish(net.now, persistTemplate(t, a, "mine")), time.Minute)
	pb := net.wait(b, b.core.Publish(net.now, persistTemplate(t, b, "theirs")), time.Minute)
	if pa.Err != nil || pb.Err != nil {
		t.Fatalf("publish: %v, %v", pa.Err, pb.Err)
	}
	mine, theirs := pa.Records[0], pb.Records[0]

	if got := a.core.OwnedRecords(); len(got) != 1 || got[0].Seq != mine.Seq {
		t.Errorf("OwnedRecords: %v", got)
	}
	var held []*records.Record
	var encs [][]byte
	a.core.ForEachStored(net.now, func(r *records.Record, enc []byte) bool {
		held, encs = append(held, r), append(encs, enc)
		return true
	})
	if len(held) != 1 || held[0].Key() != theirs.Key() {
		t.Fatalf("ForEachStored: %d records, want only the other node's", len(held))
	}

	// A withdrawal raises the node's own Seq for the name.
	if c := net.wait(a, a.core.Unpublish(net.now, mine.Name), time.Minute); c.Err != nil {
		t.Fatal(c.Err)
	}
	if got := a.core.OwnSeq(mine.Name); got <= mine.Seq {
		t.Errorf("OwnSeq after Unpublish: %d, want above %d", got, mine.Seq)
	}
	if len(a.core.OwnedRecords()) != 0 {
		t.Error("OwnedRecords after Unpublish is not empty")
	}

	cs := a.core.Contacts(10)
	var ids []identity.Key
	for _, c := range cs {
		ids = append(ids, c.ID)
		if !c.Addr.IsValid() || c.LastSeen.IsZero() {
			t.Errorf("contact %+v", c)
		}
	}
	for _, other := range net.nodes[1:] {
		if !slices.Contains(ids, other.core.ID()) {
			t.Errorf("Contacts lacks %s", other)
		}
	}
	if got := a.core.Contacts(1); len(got) != 1 || got[0] != cs[0] {
		t.Errorf("Contacts(1) = %v, want the most recent %v", got, cs[0])
	}

	// A fresh core takes the held record back; an expired one is refused.
	fresh := net.add(nil)
	if err := fresh.core.RestoreRecord(net.now, held[0], encs[0]); err != nil {
		t.Fatalf("RestoreRecord: %v", err)
	}
	n := 0
	fresh.core.ForEachStored(net.now, func(*records.Record, []byte) bool { n++; return true })
	if n != 1 {
		t.Errorf("after RestoreRecord the store holds %d records, want 1", n)
	}
	late := net.now.Add(DefaultRecordLifetime + time.Hour)
	other := net.add(nil)
	if err := other.core.RestoreRecord(late, held[0], encs[0]); !errors.Is(err, ErrBadRecord) || !errors.Is(err, records.ErrExpired) {
		t.Errorf("RestoreRecord of an expired record: %v, want ErrBadRecord and records.ErrExpired", err)
	}
	if err := other.core.RestoreRecord(late, nil, nil); !errors.Is(err, ErrBadRecord) {
		t.Errorf("RestoreRecord(nil): %v", err)
	}
}
