// Package state keeps what a peername node must remember across restarts
// in an embedded bbolt database, DIR/peername.db: the names the node
// publishes itself with the highest sequence number it ever signed for each
// (the floor below which it must never publish again, or its new records
// would be refused as replays) and the record it last published, the
// records it stores for other publishers (their canonical signed encoding,
// verified again on load), and a bounded snapshot of its routing table, so
// a restarted node rejoins through peers it knew.
//
// Every write is one bbolt transaction, fsynced before it returns. Opening
// refuses, with an error that says so, a directory another process holds
// (ErrInUse), a database written by a newer format (ErrNewerFormat), a file
// that is not a peername database or is damaged (ErrCorrupt) and a database
// of another node identity (ErrOtherIdentity); it never starts over on a
// file it cannot read.
package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// FileName is the database file inside the state directory.
const FileName = "peername.db"

// FormatVersion is the layout this package writes. A database with a
// higher version is refused; one with a lower version is migrated (there is
// none yet).
const FormatVersion uint32 = 1

// Defaults for Options fields left at zero.
const (
	DefaultLockTimeout = time.Second
	DefaultMaxOwned    = 1024
	DefaultMaxRecords  = 4096
	DefaultMaxContacts = 256
)

// Errors of Open and of the stores; each is wrapped with details, test with
// errors.Is.
var (
	ErrInUse         = errors.New("state directory in use by another process")
	ErrNewerFormat   = errors.New("state written by a newer format")
	ErrCorrupt       = errors.New("state database corrupt or not a peername state file")
	ErrOtherIdentity = errors.New("state directory belongs to another node identity")
	ErrBounds        = errors.New("state bound exceeded")
	ErrClosed        = errors.New("state database closed")
)

// Bucket and key names.
var (
	bucketMeta     = []byte("meta")
	bucketOwn      = []byte("own")
	bucketRecords  = []byte("records")
	bucketContacts = []byte("contacts")
	keyFormat      = []byte("format")
	keyNode        = []byte("node")
	keyPuzzle      = []byte("puzzle")
)

// Options tunes Open. Zero values select the defaults.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// directory before failing with ErrInUse.
	LockTimeout time.Duration
	// NodeID, when not zero, binds the directory to one node identity: a
	// database written by another identity is refused with ErrOtherIdentity.
	NodeID identity.Key
	// MaxOwned bounds the names kept in the own-names bucket.
	MaxOwned int
	// MaxRecords bounds the records kept for other publishers.
	MaxRecords int
	// MaxContacts bounds the routing-table snapshot.
	MaxContacts int
	// Logger receives what Open and the loads dropped; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MaxOwned <= 0 {
		o.MaxOwned = DefaultMaxOwned
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxContacts <= 0 {
		o.MaxContacts = DefaultMaxContacts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// DB is an open state directory. Its methods are safe for concurrent use.
type DB struct {
	db   *bolt.DB
	path string
	opts Options
}

// Open opens (creating it if needed) the state database in dir, waiting at
// most Options.LockTimeout, or until ctx ends, for another process to
// release it.
func Open(ctx context.Context, dir string, o Options) (d *DB, err error) {
	o.applyDefaults()
	if dir == "" {
		return nil, fmt.Errorf("state: open: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	// bbolt trusts its pages; check their structure before it maps them.
	if err := checkFile(ctx, path, o.LockTimeout); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	var bdb *bolt.DB
	err = guard(func() error {
		var oerr error
		bdb, oerr = bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout})
		return oerr
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("state: open %s: %w (lock not released within %s)", path, ErrInUse, o.LockTimeout)
	case err != nil && isIOError(err):
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	case err != nil:
		// Anything else bbolt refuses is the file's content: invalid,
		// checksum or version mismatch, too small, a panic on a bad page.
		return nil, fmt.Errorf("state: open %s: %w: %w", path, ErrCorrupt, err)
	}
	d = &DB{db: bdb, path: path, opts: o}
	if err := d.init(); err != nil {
		_ = guard(bdb.Close)
		return nil, err
	}
	if created {
		// The new file's directory entry must survive a crash too.
		if err := syncDir(dir); err != nil {
			_ = guard(bdb.Close)
			return nil, fmt.Errorf("state: open %s: %w", path, err)
		}
	}
	return d, nil
}

// maxWalkKeys bounds the keys walkBucket visits: far above what the bounded
// buckets hold, and a damaged tree whose pages point back at each other
// cannot keep the walk going.
const maxWalkKeys = 1 << 20

// walkBucket reads every key of a bucket and its nested buckets, checking
// their order, so a damaged page shows at Open (as an error, or a panic
// that guard turns into one) and not in the middle of a run. It runs on
// the caller's goroutine, unlike bbolt's Tx.Check, so a memory fault while
// reading the mapping is recovered too.
func walkBucket(name []byte, b *bolt.Bucket, depth int, keys *int) error {
	if depth > 2 {
		return fmt.Errorf("bucket %q nested %d deep", name, depth)
	}
	var prev []byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if *keys++; *keys > maxWalkKeys {
			return fmt.Errorf("more than %d keys", maxWalkKeys)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("bucket %q: keys out of order", name)
		}
		prev = k
		if v == nil {
			nb := b.Bucket(k)
			if nb == nil {
				return fmt.Errorf("bucket %q: key %x has no value", name, k)
			}
			if err := walkBucket(k, nb, depth+1, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// init reads every page, then the format version and the identity, and
// creates the buckets of a new database.
func (d *DB) init() error {
	fi, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("state: open %s: %w", d.path, err)
	}
	err = d.view(func(tx *bolt.Tx) error {
		// A meta page claiming more pages than the file holds would send
		// the check below (and later reads) past the end of the file.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("meta page claims %d bytes, the file has %d", tx.Size(), fi.Size())
		}
		keys := 0
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walkBucket(name, b, 0, &keys)
		})
	})
	if err != nil {
		return fmt.Errorf("state: open %s: %w: %w", d.path, ErrCorrupt, err)
	}
	return d.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new database holds no bucket at all; anything else without
			// a meta bucket is some other program's bbolt file.
			var other []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				other = append(other, fmt.Sprintf("%q", name))
				return nil
			})
			if len(other) > 0 {
				return fmt.Errorf("state: open %s: %w: no meta bucket, holds %v", d.path, ErrCorrupt, other)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion)); err != nil {
				return err
			}
		}
		v, err := DecodeFormat(meta.Get(keyFormat))
		if err != nil {
			return fmt.Errorf("state: open %s: %w", d.path, err)
		}
		if v > FormatVersion {
			return fmt.Errorf("state: open %s: %w: file format %d, this build reads format %d at most",
				d.path, ErrNewerFormat, v, FormatVersion)
		}
		if id := d.opts.NodeID; id != (identity.Key{}) {
			switch got := meta.Get(keyNode); {
			case got == nil:
				if err := meta.Put(keyNode, id[:]); err != nil {
					return err
				}
			case !bytes.Equal(got, id[:]):
				return fmt.Errorf("state: open %s: %w: written by node %x, this node is %s",
					d.path, ErrOtherIdentity, got, id)
			}
		}
		for _, b := range [][]byte{bucketOwn, bucketRecords, bucketContacts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// DecodeFormat parses the format-version value of the meta bucket.
func DecodeFormat(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%w: format version of %d bytes", ErrCorrupt, len(v))
	}
	f := binary.BigEndian.Uint32(v)
	if f == 0 {
		return 0, fmt.Errorf("%w: format version 0", ErrCorrupt)
	}
	return f, nil
}

// Puzzle is a solved identity puzzle: Nonce solves it for the node's key at
// Bits difficulty.
type Puzzle struct {
	Bits  int
	Nonce uint64
}

// EncodePuzzle is the meta bucket's value for p: the difficulty in one byte,
// then the nonce, big-endian.
func EncodePuzzle(p Puzzle) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(p.Bits)}, p.Nonce)
}

// DecodePuzzle parses EncodePuzzle's output.
func DecodePuzzle(v []byte) (Puzzle, error) {
	if len(v) != 9 {
		return Puzzle{}, fmt.Errorf("%w: puzzle of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] == 0 || v[0] > 64 {
		return Puzzle{}, fmt.Errorf("%w: puzzle of %d bits", ErrCorrupt, v[0])
	}
	return Puzzle{Bits: int(v[0]), Nonce: binary.BigEndian.Uint64(v[1:])}, nil
}

// Puzzle returns the identity puzzle solution last saved with PutPuzzle, so
// a restart need not solve it again. ok is false if there is none; the
// caller checks the nonce before it trusts it (a solution for another
// difficulty or a damaged value is solved anew).
func (d *DB) Puzzle() (p Puzzle, ok bool, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyPuzzle)
		if v == nil {
			return nil
		}
		var derr error
		if p, derr = DecodePuzzle(v); derr != nil {
			return nil // treated as absent: it is only a cache of work
		}
		ok = true
		return nil
	})
	if err != nil {
		return Puzzle{}, false, fmt.Errorf("state: read puzzle: %w", err)
	}
	return p, ok, nil
}

// PutPuzzle saves the node's identity puzzle solution.
func (d *DB) PutPuzzle(p Puzzle) error {
	if p.Bits <= 0 || p.Bits > 64 {
		return fmt.Errorf("state: put puzzle: %d bits, want 1 to 64", p.Bits)
	}
	if err := d.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyPuzzle, EncodePuzzle(p))
	}); err != nil {
		return fmt.Errorf("state: put puzzle: %w", err)
	}
	return nil
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.path }

// Close releases the database and its lock. It is idempotent.
func (d *DB) Close() error {
	if err := guard(d.db.Close); err != nil {
		return fmt.Errorf("state: close %s: %w", d.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// isIOError reports whether err comes from the operating system (opening,
// locking, mapping the file) rather than from what the file holds.
func isIOError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno) && !errors.Is(err, errPanicked)
}

// errPanicked marks a panic of bbolt on a damaged file, turned into an error.
var errPanicked = errors.New("database code panicked")

// guard runs fn, turning a panic (bbolt panics on some damaged pages) or a
// memory fault while reading the mapped file into an error.
func guard(fn func() error) (err error) {
	prev := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(prev)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanicked, r)
		}
	}()
	return fn()
}

func (d *DB) view(fn func(*bolt.Tx) error) error {
	err := guard(func() error { return d.db.View(fn) })
	return d.wrap(err)
}

func (d *DB) update(fn func(*bolt.Tx) error) error {
	err := guard(func() error { return d.db.Update(fn) })
	return d.wrap(err)
}

func (d *DB) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("state: %s: %w", d.path, ErrClosed)
	case errors.Is(err, errPanicked):
		return fmt.Errorf("state: %s: %w: %w", d.path, ErrCorrupt, err)
	}
	return err
}

// ---- own names ----

// Own is a name the node publishes itself.
type Own struct {
	// Key is the name's overlay key.
	Key identity.Key
	// Seq is the highest sequence number the node ever signed for the name:
	// whatever it publishes next must be higher.
	Seq uint64
	// Record is the record the node last published for the name, nil once
	// it withdrew the name (Seq still holds).
	Record *records.Record
}

// EncodeOwn is the value of an own-names entry: Seq (8 bytes, big endian)
// followed by the record's canonical encoding, or nothing when withdrawn.
func EncodeOwn(o Own) ([]byte, error) {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+512), o.Seq)
	if o.Record == nil {
		return v, nil
	}
	if o.Record.Key() != o.Key {
		return nil, fmt.Errorf("state: own %s: record of key %s", o.Key, o.Record.Key())
	}
	if o.Record.Seq > o.Seq {
		return nil, fmt.Errorf("state: own %s: record seq %d above floor %d", o.Key, o.Record.Seq, o.Seq)
	}
	enc, err := records.Encode(o.Record)
	if err != nil {
		return nil, fmt.Errorf("state: own %s: %w", o.Key, err)
	}
	return append(v, enc...), nil
}

// DecodeOwn parses an own-names entry. The record, if any, must carry a
// valid signature by pub (when pub is not nil) and belong to key; it may
// have expired since.
func DecodeOwn(key, v []byte, pub []byte) (Own, error) {
	var o Own
	if len(key) != len(o.Key) {
		return o, fmt.Errorf("%w: own-name key of %d bytes", ErrCorrupt, len(key))
	}
	copy(o.Key[:], key)
	if len(v) < 8 {
		return o, fmt.Errorf("%w: own %s: value of %d bytes", ErrCorrupt, o.Key, len(v))
	}
	o.Seq = binary.BigEndian.Uint64(v)
	if len(v) == 8 {
		return o, nil
	}
	rec, err := records.Decode(v[8:])
	if err != nil {
		return o, fmt.Errorf("%w: own %s: %w", ErrCorrupt, o.Key, err)
	}
	switch {
	case rec.Key() != o.Key:
		return o, fmt.Errorf("%w: own %s: record of key %s", ErrCorrupt, o.Key, rec.Key())
	case rec.Seq > o.Seq:
		return o, fmt.Errorf("%w: own %s: record seq %d above floor %d", ErrCorrupt, o.Key, rec.Seq, o.Seq)
	case pub != nil && !bytes.Equal(rec.PublicKey, pub):
		return o, fmt.Errorf("%w: own %s: record of another publisher", ErrCorrupt, o.Key)
	}
	// The signature must hold; expiry does not matter for a template.
	if err := records.Verify(rec, rec.Issued); err != nil {
		return o, fmt.Errorf("%w: own %s: %w", ErrCorrupt, o.Key, err)
	}
	o.Record = rec
	return o, nil
}

// PutOwn writes own-name entries in one transaction, fsynced when it
// returns. A floor never goes down: an entry whose Seq is below the stored
// one keeps the stored Seq; its Record replaces the stored one.
func (d *DB) PutOwn(entries ...Own) error {
	return d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOwn)
		n := b.Stats().KeyN
		for _, o := range entries {
			if old := b.Get(o.Key[:]); old != nil {
				if len(old) >= 8 && binary.BigEndian.Uint64(old) > o.Seq {
					o.Seq = binary.BigEndian.Uint64(old)
				}
			} else if n >= d.opts.MaxOwned {
				return fmt.Errorf("state: own %s: %w: %d names", o.Key, ErrBounds, d.opts.MaxOwned)
			} else {
				n++
			}
			v, err := EncodeOwn(o)
			if err != nil {
				return err
			}
			if err := b.Put(o.Key[:], v); err != nil {
				return fmt.Errorf("state: own %s: %w", o.Key, err)
			}
		}
		return nil
	})
}

// Owned returns the own-name entries. pub, when not nil, is the node's
// public key: records of another key are refused. A damaged entry is an
// error: losing a floor silently could make the node publish a replay.
func (d *DB) Owned(pub []byte) ([]Own, error) {
	var out []Own
	err := d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwn).ForEach(func(k, v []byte) error {
			if len(out) >= d.opts.MaxOwned {
				return fmt.Errorf("state: %w: more than %d own names", ErrBounds, d.opts.MaxOwned)
			}
			o, err := DecodeOwn(k, v, pub)
			if err != nil {
				return fmt.Errorf("state: %s: %w", d.path, err)
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

// ---- records stored for others ----

// Stored is a record held for another publisher, with its canonical encoding.
type Stored struct {
	Record *records.Record
	Enc    []byte
}

func storedKey(r *records.Record) []byte {
	k := r.Key()
	return append(k[:], r.PublicKey...)
}

// DecodeStored parses a records-bucket entry (key: overlay key || publisher
// key; value: the canonical encoding) and verifies it at now.
func DecodeStored(key, v []byte, now time.Time) (Stored, error) {
	rec, err := records.Decode(v)
	if err != nil {
		return Stored{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if !bytes.Equal(key, storedKey(rec)) {
		return Stored{}, fmt.Errorf("%w: record %s under another key", ErrCorrupt, rec.Name)
	}
	if err := records.Verify(rec, now); err != nil {
		return Stored{}, fmt.Errorf("record %s: %w", rec.Name, err)
	}
	return Stored{Record: rec, Enc: bytes.Clone(v)}, nil
}

// SaveRecords makes the records bucket hold exactly recs (at most
// Options.MaxRecords of them, the rest are not saved and counted in the
// returned number), writing only what changed.
func (d *DB) SaveRecords(recs []Stored) (skipped int, err error) {
	want := make(map[string][]byte, len(recs))
	for _, s := range recs {
		if len(want) >= d.opts.MaxRecords || len(s.Enc) > records.MaxEncodedSize {
			skipped++
			continue
		}
		want[string(storedKey(s.Record))] = s.Enc
	}
	err = d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if w, ok := want[string(k)]; !ok {
				stale = append(stale, bytes.Clone(k))
			} else if bytes.Equal(w, v) {
				delete(want, string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		slices.Sort(keys) // sequential inserts fill pages best
		for _, k := range keys {
			if err := b.Put([]byte(k), want[k]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return skipped, fmt.Errorf("state: save records: %w", err)
	}
	return skipped, nil
}

// LoadRecords returns the stored records that still verify at now. Those
// that do not (expired, bad signature, damaged) are dropped, counted and
// deleted from the file; they are not fatal.
func (d *DB) LoadRecords(now time.Time) (out []Stored, dropped int, err error) {
	var bad [][]byte
	err = d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			if len(out) >= d.opts.MaxRecords {
				dropped++
				bad = append(bad, bytes.Clone(k))
				return nil
			}
			s, err := DecodeStored(k, v, now)
			if err != nil {
				dropped++
				bad = append(bad, bytes.Clone(k))
				d.opts.Logger.Debug("stored record dropped", "err", err)
				return nil
			}
			out = append(out, s)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("state: load records: %w", err)
	}
	if len(bad) > 0 {
		err = d.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			for _, k := range bad {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("state: load records: drop: %w", err)
		}
	}
	return out, dropped, nil
}

// ---- routing-table snapshot ----

// Contact is a routing-table entry: a node ID and the address it was last
// heard from.
type Contact struct {
	ID       identity.Key
	Addr     netip.AddrPort
	LastSeen time.Time // whole seconds
}

// EncodeContact is the value of a contacts entry: last seen (8 bytes, Unix
// seconds, big endian) followed by netip.AddrPort's binary form.
func EncodeContact(c Contact) ([]byte, error) {
	if !c.Addr.IsValid() || c.Addr.Port() == 0 {
		return nil, fmt.Errorf("state: contact %s: bad address %s", c.ID, c.Addr)
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+18), uint64(c.LastSeen.Unix()))
	a, err := c.Addr.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("state: contact %s: %w", c.ID, err)
	}
	return append(v, a...), nil
}

// DecodeContact parses a contacts entry.
func DecodeContact(key, v []byte) (Contact, error) {
	var c Contact
	if len(key) != len(c.ID) {
		return c, fmt.Errorf("%w: contact key of %d bytes", ErrCorrupt, len(key))
	}
	copy(c.ID[:], key)
	if len(v) < 8 {
		return c, fmt.Errorf("%w: contact %s: value of %d bytes", ErrCorrupt, c.ID, len(v))
	}
	c.LastSeen = time.Unix(int64(binary.BigEndian.Uint64(v)), 0).UTC()
	if err := c.Addr.UnmarshalBinary(v[8:]); err != nil {
		return c, fmt.Errorf("%w: contact %s: %w", ErrCorrupt, c.ID, err)
	}
	if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Addr.Addr().Zone() != "" {
		return c, fmt.Errorf("%w: contact %s: address %s", ErrCorrupt, c.ID, c.Addr)
	}
	return c, nil
}

// SaveContacts replaces the routing-table snapshot with cs, keeping the
// Options.MaxContacts most recently seen.
func (d *DB) SaveContacts(cs []Contact) error {
	cs = slices.Clone(cs)
	slices.SortStableFunc(cs, func(a, b Contact) int { return b.LastSeen.Compare(a.LastSeen) })
	if len(cs) > d.opts.MaxContacts {
		cs = cs[:d.opts.MaxContacts]
	}
	vals := make([][]byte, len(cs))
	for i, c := range cs {
		v, err := EncodeContact(c)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	err := d.update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketContacts); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketContacts)
		if err != nil {
			return err
		}
		for i, c := range cs {
			if err := b.Put(c.ID[:], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: save contacts: %w", err)
	}
	return nil
}

// LoadContacts returns the routing-table snapshot, most recently seen
// first. Damaged entries are skipped and counted.
func (d *DB) LoadContacts() (out []Contact, dropped int, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContacts).ForEach(func(k, v []byte) error {
			c, err := DecodeContact(k, v)
			if err != nil || len(out) >= d.opts.MaxContacts {
				dropped++
				return nil
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("state: load contacts: %w", err)
	}
	slices.SortStableFunc(out, func(a, b Contact) int { return b.LastSeen.Compare(a.LastSeen) })
	return out, dropped, nil
}
