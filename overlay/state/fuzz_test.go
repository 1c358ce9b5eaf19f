package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/peername/peername/records"
)

// fuzzNow is the fixed time the fuzz targets verify records at, so the
// checked-in corpus keeps exercising the same paths.
var fuzzNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The seeds below are also checked in under testdata/fuzz (regenerate with
// PEERNAME_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus ./state).

func ownSeeds(t testing.TB) [][2][]byte {
	self := seededID(1)
	rec := signed(t, self, "laptop", 5, fuzzNow)
	enc, _ := records.Encode(rec)
	k := rec.Key()
	return [][2][]byte{
		{k[:], binary.BigEndian.AppendUint64(nil, 5)},
		{k[:], append(binary.BigEndian.AppendUint64(nil, 5), enc...)},
		{k[:], append(binary.BigEndian.AppendUint64(nil, 4), enc...)},
		{k[:5], []byte{1}},
		{k[:], append(binary.BigEndian.AppendUint64(nil, 9), enc[:len(enc)/2]...)},
	}
}

func storedSeeds(t testing.TB) [][2][]byte {
	rec := signed(t, seededID(2), "server", 1, fuzzNow)
	enc, _ := records.Encode(rec)
	bad := bytes.Clone(enc)
	bad[len(bad)-1] ^= 1
	return [][2][]byte{
		{storedKey(rec), enc},
		{storedKey(rec), bad},
		{storedKey(rec)[:32], enc},
		{nil, nil},
	}
}

func contactSeeds(t testing.TB) [][2][]byte {
	id := seededID(3).NodeID()
	v4, _ := EncodeContact(Contact{ID: id, Addr: netip.MustParseAddrPort("127.0.0.1:3540"), LastSeen: fuzzNow})
	v6, _ := EncodeContact(Contact{ID: id, Addr: netip.MustParseAddrPort("[2001:db8::1]:53"), LastSeen: fuzzNow})
	return [][2][]byte{{id[:], v4}, {id[:], v6}, {id[:], v4[:9]}, {id[:3], v4}}
}

func formatSeeds() [][]byte {
	return [][]byte{{0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 0, 0}, {1}, nil}
}

// fileSeeds returns whole database files: a valid one and damaged copies.
func fileSeeds(t testing.TB) [][]byte {
	dir, err := os.MkdirTemp("", "statefuzz")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	self := seededID(1)
	rec := signed(t, self, "laptop", 5, fuzzNow)
	other := signed(t, seededID(2), "server", 1, fuzzNow)
	enc, _ := records.Encode(other)
	if err := d.PutOwn(Own{Key: rec.Key(), Seq: 5, Record: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SaveRecords([]Stored{{Record: other, Enc: enc}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveContacts([]Contact{{ID: seededID(3).NodeID(), Addr: netip.MustParseAddrPort("127.0.0.1:3540"), LastSeen: fuzzNow}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	good, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[3*os.Getpagesize()+20] ^= 0x5a
	return [][]byte{good, flipped, good[:len(good)/2]}
}

func FuzzDecodeOwn(f *testing.F) {
	for _, s := range ownSeeds(f) {
		f.Add(s[0], s[1])
	}
	pub := seededID(1).PublicKey()
	f.Fuzz(func(t *testing.T, key, val []byte) {
		o, err := DecodeOwn(key, val, pub)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		again, err := EncodeOwn(o)
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(again, val) {
			t.Fatalf("re-encoding differs:\n% x\n% x", val, again)
		}
	})
}

func FuzzDecodeStored(f *testing.F) {
	for _, s := range storedSeeds(f) {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, val []byte) {
		s, err := DecodeStored(key, val, fuzzNow)
		if err != nil {
			return
		}
		if err := records.Verify(s.Record, fuzzNow); err != nil {
			t.Fatalf("accepted a record that does not verify: %v", err)
		}
		if !bytes.Equal(key, storedKey(s.Record)) {
			t.Fatal("accepted a record under another key")
		}
	})
}

func FuzzDecodeContact(f *testing.F) {
	for _, s := range contactSeeds(f) {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, val []byte) {
		c, err := DecodeContact(key, val)
		if err != nil {
			return
		}
		if !c.Addr.IsValid() || c.Addr.Port() == 0 {
			t.Fatalf("accepted address %s", c.Addr)
		}
		again, err := EncodeContact(c)
		if err != nil || !bytes.Equal(again, val) {
			t.Fatalf("re-encoding differs (%v):\n% x\n% x", err, val, again)
		}
	})
}

func FuzzDecodeFormat(f *testing.F) {
	for _, s := range formatSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if got, err := DecodeFormat(v); err == nil && (len(v) != 4 || got == 0) {
			t.Fatalf("accepted %x as format %d", v, got)
		}
	})
}

// FuzzOpen opens arbitrary files as a state database: an error, never a
// panic or a hang, and a file that opens can be read through.
func FuzzOpen(f *testing.F) {
	for _, s := range fileSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), file, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(context.Background(), dir, Options{LockTimeout: 10 * time.Millisecond})
		if err != nil {
			return
		}
		defer d.Close()
		_, _ = d.Owned(nil)
		_, _, _ = d.LoadRecords(fuzzNow)
		_, _, _ = d.LoadContacts()
	})
}

// FuzzCheckBolt runs the structural check of database files alone (fast,
// in memory): whatever the bytes, an answer, never a panic.
func FuzzCheckBolt(f *testing.F) {
	for _, s := range fileSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		_ = checkBolt(file)
	})
}

// TestWriteFuzzCorpus writes the seeds above as the checked-in corpus.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PEERNAME_WRITE_CORPUS") == "" {
		t.Skip("set PEERNAME_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, i int, vals ...[]byte) {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range ownSeeds(t) {
		write("FuzzDecodeOwn", i, s[0], s[1])
	}
	for i, s := range storedSeeds(t) {
		write("FuzzDecodeStored", i, s[0], s[1])
	}
	for i, s := range contactSeeds(t) {
		write("FuzzDecodeContact", i, s[0], s[1])
	}
	for i, s := range formatSeeds() {
		write("FuzzDecodeFormat", i, s)
	}
	for i, s := range fileSeeds(t) {
		write("FuzzOpen", i, s)
		write("FuzzCheckBolt", i, s)
	}
}

func BenchmarkCheckBolt(b *testing.B) {
	file := fileSeeds(b)[0]
	for b.Loop() {
		_ = checkBolt(file)
	}
}

func FuzzDecodePuzzle(f *testing.F) {
	f.Add(EncodePuzzle(Puzzle{Bits: 20, Nonce: 123456}))
	f.Add([]byte{})
	f.Add(make([]byte, 9))
	f.Fuzz(func(t *testing.T, v []byte) {
		p, err := DecodePuzzle(v)
		if err != nil {
			return
		}
		if again := EncodePuzzle(p); !bytes.Equal(again, v) {
			t.Fatalf("re-encoding differs:\n% x\n% x", v, again)
		}
	})
}
