package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/internal/testutil"
	"github.com/peername/peername/records"
)

func seededID(b byte) *identity.Identity { return testutil.Identity(b) }

// signed returns a record for classifier signed by id, issued at now.
func signed(t testing.TB, id *identity.Identity, classifier string, seq uint64, now time.Time) *records.Record {
	t.Helper()
	return testutil.Signed(t, id, testutil.Name(t, id, classifier, true), seq, now, time.Hour, func(r *records.Record) {
		r.Endpoints, r.Services, r.TXT = []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil, []string{"v=1"}
	})
}

func stored(t testing.TB, r *records.Record) Stored {
	t.Helper()
	enc, err := records.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return Stored{Record: r, Enc: enc}
}

func mustOpen(t testing.TB, dir string, o Options) *DB {
	t.Helper()
	d, err := Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	self := seededID(1)
	d := mustOpen(t, dir, Options{NodeID: self.NodeID()})

	own := signed(t, self, "laptop", 41, now)
	withdrawnName, _ := identity.NewSecuredName("old", self.PublicKey())
	if err := d.PutOwn(Own{Key: own.Key(), Seq: 42, Record: own}, Own{Key: withdrawnName.Key(), Seq: 7}); err != nil {
		t.Fatal(err)
	}
	var recs []Stored
	for i := range 5 {
		recs = append(recs, stored(t, signed(t, seededID(byte(10+i)), fmt.Sprintf("h%d", i), uint64(100+i), now)))
	}
	if skipped, err := d.SaveRecords(recs); err != nil || skipped != 0 {
		t.Fatalf("SaveRecords: skipped %d, %v", skipped, err)
	}
	contacts := []Contact{
		{ID: seededID(20).NodeID(), Addr: netip.MustParseAddrPort("127.0.0.1:3540"), LastSeen: now.Add(-time.Minute).Truncate(time.Second).UTC()},
		{ID: seededID(21).NodeID(), Addr: netip.MustParseAddrPort("[2001:db8::1]:4000"), LastSeen: now.Truncate(time.Second).UTC()},
	}
	if err := d.SaveContacts(contacts); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = mustOpen(t, dir, Options{NodeID: self.NodeID()})
	defer d.Close()
	owned, err := d.Owned(self.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 2 {
		t.Fatalf("owned: got %d entries, want 2", len(owned))
	}
	for _, o := range owned {
		switch o.Key {
		case own.Key():
			if o.Seq != 42 || o.Record == nil || o.Record.Seq != 41 || !bytes.Equal(o.Record.Signature, own.Signature) {
				t.Errorf("own entry: seq %d record %+v", o.Seq, o.Record)
			}
		case withdrawnName.Key():
			if o.Seq != 7 || o.Record != nil {
				t.Errorf("withdrawn entry: seq %d record %v", o.Seq, o.Record)
			}
		default:
			t.Errorf("unexpected own key %s", o.Key)
		}
	}
	got, dropped, err := d.LoadRecords(now)
	if err != nil || dropped != 0 {
		t.Fatalf("LoadRecords: dropped %d, %v", dropped, err)
	}
	if len(got) != len(recs) {
		t.Fatalf("LoadRecords: %d records, want %d", len(got), len(recs))
	}
	for _, g := range got {
		if !slices.ContainsFunc(recs, func(s Stored) bool { return bytes.Equal(s.Enc, g.Enc) }) {
			t.Errorf("record %s not saved", g.Record.Name)
		}
	}
	cs, dropped, err := d.LoadContacts()
	if err != nil || dropped != 0 {
		t.Fatalf("LoadContacts: dropped %d, %v", dropped, err)
	}
	if want := []Contact{contacts[1], contacts[0]}; !slices.Equal(cs, want) {
		t.Errorf("contacts: got %v, want %v (most recent first)", cs, want)
	}
}

func TestFloorNeverGoesDown(t *testing.T) {
	t.Parallel()
	self := seededID(1)
	d := mustOpen(t, t.TempDir(), Options{})
	defer d.Close()
	n, _ := identity.NewSecuredName("x", self.PublicKey())
	tests := []struct {
		put, want uint64
	}{{10, 10}, {5, 10}, {11, 11}, {0, 11}}
	for _, tc := range tests {
		if err := d.PutOwn(Own{Key: n.Key(), Seq: tc.put}); err != nil {
			t.Fatal(err)
		}
		owned, err := d.Owned(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(owned) != 1 || owned[0].Seq != tc.want {
			t.Errorf("after PutOwn(seq %d): %+v, want floor %d", tc.put, owned, tc.want)
		}
	}
}

func TestSaveRecordsReplacesSet(t *testing.T) {
	t.Parallel()
	now := time.Now()
	d := mustOpen(t, t.TempDir(), Options{})
	defer d.Close()
	a := stored(t, signed(t, seededID(2), "a", 1, now))
	b := stored(t, signed(t, seededID(3), "b", 1, now))
	b2 := stored(t, signed(t, seededID(3), "b", 2, now))
	c := stored(t, signed(t, seededID(4), "c", 1, now))
	steps := [][]Stored{{a, b}, {b2, c}, {}, {a}}
	for i, set := range steps {
		if _, err := d.SaveRecords(set); err != nil {
			t.Fatal(err)
		}
		got, _, err := d.LoadRecords(now)
		if err != nil {
			t.Fatal(err)
		}
		var gotEnc, wantEnc []string
		for _, g := range got {
			gotEnc = append(gotEnc, string(g.Enc))
		}
		for _, w := range set {
			wantEnc = append(wantEnc, string(w.Enc))
		}
		slices.Sort(gotEnc)
		slices.Sort(wantEnc)
		if !slices.Equal(gotEnc, wantEnc) {
			t.Errorf("step %d: loaded %d records, want %d", i, len(got), len(set))
		}
	}
}

func TestLoadRecordsDropsBadOnes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	dir := t.TempDir()
	d := mustOpen(t, dir, Options{})
	good := stored(t, signed(t, seededID(2), "good", 1, now))
	old := stored(t, signed(t, seededID(3), "old", 1, now.Add(-2*time.Hour))) // expired an hour ago
	forged := stored(t, signed(t, seededID(4), "forged", 1, now))
	forged.Enc = bytes.Clone(forged.Enc)
	forged.Enc[len(forged.Enc)-1] ^= 1 // break the signature
	if _, err := d.SaveRecords([]Stored{good, old, forged}); err != nil {
		t.Fatal(err)
	}
	// A value that is not a record at all, under a well-formed key.
	err := d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(bytes.Repeat([]byte{1}, 64), []byte("garbage"))
	})
	if err != nil {
		t.Fatal(err)
	}
	got, dropped, err := d.LoadRecords(now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got[0].Enc, good.Enc) || dropped != 3 {
		t.Fatalf("LoadRecords: %d records, %d dropped; want 1 and 3", len(got), dropped)
	}
	// The dropped ones are gone from the file.
	if _, dropped, _ = d.LoadRecords(now); dropped != 0 {
		t.Errorf("second load dropped %d, want 0", dropped)
	}
	d.Close()
}

func TestBounds(t *testing.T) {
	t.Parallel()
	now := time.Now()
	self := seededID(1)
	d := mustOpen(t, t.TempDir(), Options{MaxOwned: 2, MaxRecords: 3, MaxContacts: 2})
	defer d.Close()
	var recs []Stored
	for i := range 5 {
		recs = append(recs, stored(t, signed(t, seededID(byte(10+i)), "n", 1, now)))
	}
	skipped, err := d.SaveRecords(recs)
	if err != nil || skipped != 2 {
		t.Errorf("SaveRecords of 5 with MaxRecords 3: skipped %d, %v", skipped, err)
	}
	if got, _, _ := d.LoadRecords(now); len(got) != 3 {
		t.Errorf("loaded %d records, want 3", len(got))
	}
	var cs []Contact
	for i := range 4 {
		cs = append(cs, Contact{ID: seededID(byte(30 + i)).NodeID(), Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(4000+i)), LastSeen: now.Add(time.Duration(i) * time.Second).Truncate(time.Second).UTC()})
	}
	if err := d.SaveContacts(cs); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := d.LoadContacts(); !slices.Equal(got, []Contact{cs[3], cs[2]}) {
		t.Errorf("contacts: %v, want the two most recent", got)
	}
	for i, c := range []string{"a", "b", "c"} {
		n, _ := identity.NewSecuredName(c, self.PublicKey())
		err := d.PutOwn(Own{Key: n.Key(), Seq: 1})
		if i < 2 && err != nil {
			t.Errorf("PutOwn %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, ErrBounds) {
			t.Errorf("PutOwn beyond MaxOwned: %v, want ErrBounds", err)
		}
	}
}

func TestLockedDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := mustOpen(t, dir, Options{})
	start := time.Now()
	_, err := Open(context.Background(), dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "state directory in use") {
		t.Errorf("error %q does not say the directory is in use", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("second Open took %s", el)
	}
	// The caller's context ends the wait too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, dir, Options{LockTimeout: time.Minute}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with an ending context: %v, want context.DeadlineExceeded", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = mustOpen(t, dir, Options{})
	d.Close()
}

func TestNewerFormatRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustOpen(t, dir, Options{}).Close()
	setMeta(t, dir, keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion+1))
	_, err := Open(context.Background(), dir, Options{})
	if !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("Open: %v, want ErrNewerFormat", err)
	}
	for _, want := range []string{fmt.Sprintf("format %d", FormatVersion+1), fmt.Sprintf("format %d at most", FormatVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestOtherIdentityRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustOpen(t, dir, Options{NodeID: seededID(1).NodeID()}).Close()
	if _, err := Open(context.Background(), dir, Options{NodeID: seededID(2).NodeID()}); !errors.Is(err, ErrOtherIdentity) {
		t.Fatalf("Open by another identity: %v, want ErrOtherIdentity", err)
	}
	mustOpen(t, dir, Options{NodeID: seededID(1).NodeID()}).Close()
}

// setMeta rewrites one meta key of a closed state directory.
func setMeta(t *testing.T, dir string, key, val []byte) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, val) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptRefused(t *testing.T) {
	t.Parallel()
	valid := func(t *testing.T) []byte {
		dir := t.TempDir()
		d := mustOpen(t, dir, Options{})
		now := time.Now()
		if _, err := d.SaveRecords([]Stored{stored(t, signed(t, seededID(2), "a", 1, now))}); err != nil {
			t.Fatal(err)
		}
		d.Close()
		b, err := os.ReadFile(filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		file  func(t *testing.T) []byte
		setup func(t *testing.T, dir string) // instead of file
	}{
		{name: "text file", file: func(*testing.T) []byte { return []byte("not a database\n") }},
		{name: "zeros", file: func(*testing.T) []byte { return make([]byte, 64<<10) }},
		{name: "truncated", file: func(t *testing.T) []byte { return valid(t)[:3000] }},
		{name: "both meta pages damaged", file: func(t *testing.T) []byte {
			b := valid(t)
			ps := os.Getpagesize()
			b[40] ^= 0xff
			b[ps+40] ^= 0xff
			return b
		}},
		{name: "data pages overwritten", file: func(t *testing.T) []byte {
			b := valid(t)
			for i := 2 * os.Getpagesize(); i < len(b); i++ {
				b[i] = byte(i * 7)
			}
			return b
		}},
		{name: "another program's bbolt file", setup: func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err })
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
		}},
		{name: "bad format value", setup: func(t *testing.T, dir string) {
			mustOpen(t, dir, Options{}).Close()
			setMeta(t, dir, keyFormat, []byte{1, 2, 3})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			} else if err := os.WriteFile(filepath.Join(dir, FileName), tc.file(t), 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, FileName))
			d, err := Open(context.Background(), dir, Options{})
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
				t.Errorf("error %q does not name the file", err)
			}
			after, _ := os.ReadFile(filepath.Join(dir, FileName))
			if !bytes.Equal(before, after) {
				t.Error("Open modified the damaged file (a silent reset)")
			}
		})
	}
}

func TestDamagedOwnEntryIsAnError(t *testing.T) {
	t.Parallel()
	self := seededID(1)
	now := time.Now()
	rec := signed(t, self, "x", 3, now)
	enc, _ := records.Encode(rec)
	k := rec.Key()
	tests := []struct {
		name string
		key  []byte
		val  []byte
		pub  []byte
	}{
		{"short value", k[:], []byte{1, 2}, nil},
		{"bad record", k[:], append(make([]byte, 8), 0xde, 0xad), nil},
		{"record under another key", bytes.Repeat([]byte{9}, 32), append(binary.BigEndian.AppendUint64(nil, 3), enc...), nil},
		{"record above floor", k[:], append(binary.BigEndian.AppendUint64(nil, 2), enc...), nil},
		{"record of another key", k[:], append(binary.BigEndian.AppendUint64(nil, 3), enc...), seededID(2).PublicKey()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := mustOpen(t, t.TempDir(), Options{})
			defer d.Close()
			if err := d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOwn).Put(tc.key, tc.val) }); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Owned(tc.pub); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Owned: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	d := mustOpen(t, t.TempDir(), Options{})
	d.Close()
	if err := d.PutOwn(Own{Seq: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("PutOwn after Close: %v, want ErrClosed", err)
	}
}

// TestRandomDamageNeverHangs opens copies of a valid database with random
// bytes overwritten: each open fails with ErrCorrupt or yields a database
// that can be read through, quickly; never a panic, a fault or a hang (bbolt
// alone loops forever on some of these, e.g. branch pages pointing back).
func TestRandomDamageNeverHangs(t *testing.T) {
	t.Parallel()
	good := fileSeeds(t)[0]
	r := rand.New(rand.NewPCG(1, 2))
	n := 400
	if testing.Short() {
		n = 50
	}
	dir := t.TempDir()
	for i := range n {
		b := bytes.Clone(good)
		for range 1 + r.IntN(8) {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		d, err := Open(context.Background(), dir, Options{LockTimeout: 10 * time.Millisecond})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("mutation %d: %v, want ErrCorrupt", i, err)
		}
		if err == nil {
			_, _ = d.Owned(nil)
			_, _, _ = d.LoadRecords(fuzzNow)
			_, _, _ = d.LoadContacts()
			d.Close()
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("mutation %d took %s", i, el)
		}
	}
}
