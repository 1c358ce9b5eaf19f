package overlay

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// storedRecord is one record held for the overlay.
type storedRecord struct {
	rec     *records.Record
	enc     []byte
	expires int64
	source  netip.Addr // who sent it (zero for our own records)
	pushed  []uint64   // ID prefixes of the replicas that hold it (acknowledged, or presumed: see markPushed)
}

// servable reports whether sr may be returned (to a peer's FIND_VALUE, or
// into the node's own Resolve) at now. Its bounds, its key's binding to
// its authority and its signature were checked by records.Verify when it
// was stored (putRecord, the only way into the store) and cannot change
// since; what can is its time window, checked again here as Verify would:
// not expired, and not issued more than records.MaxClockSkew after now (a
// clock stepped back since). This spares an Ed25519 verification per
// answer; a resolver still verifies every record it receives.
func (sr *storedRecord) servable(now int64) bool {
	t := unixTime(now)
	return t.Before(sr.rec.Expires) && !sr.rec.Issued.After(t.Add(records.MaxClockSkew))
}

// addPushed records that the node with ID prefix p holds the record.
func (sr *storedRecord) addPushed(p uint64) {
	if !slices.Contains(sr.pushed, p) {
		sr.pushed = append(sr.pushed, p)
	}
}

// slot holds the records under one key: at most one for a secured name, at
// most MaxPublishers (one per publisher key) for an unsecured name.
type slot struct {
	recs []*storedRecord
}

// recordStore is the bounded record store of a node.
type recordStore struct {
	m          map[identity.Key]*slot
	count      int
	bytes      int
	perSource  map[netip.Addr]int
	perPub     map[string]int // records received from peers, by publisher key
	maxRecords int
	maxBytes   int
	maxSource  int
	maxPub     int
	maxPerPub  int
}

func newRecordStore(cfg *Config) recordStore {
	return recordStore{
		m:          make(map[identity.Key]*slot),
		perSource:  make(map[netip.Addr]int),
		perPub:     make(map[string]int),
		maxRecords: cfg.MaxRecords,
		maxBytes:   cfg.MaxRecordBytes,
		maxSource:  cfg.MaxPerSource,
		maxPub:     cfg.MaxPublishers,
		maxPerPub:  cfg.MaxPerPublisher,
	}
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// putResult is the outcome of a store attempt, mapped to a STORE_ACK status.
type putResult struct {
	status  byte
	changed bool // the store now holds a record it did not hold before
	err     error
}

// put verifies and stores an encoded record under key. Identical bytes already
// held are acknowledged without re-verification.
func (st *recordStore) put(now int64, key identity.Key, enc []byte, src netip.Addr) putResult {
	sl := st.m[key]
	if sl != nil {
		for _, s := range sl.recs {
			if bytes.Equal(s.enc, enc) {
				return putResult{status: storeOK}
			}
		}
	}
	enc = bytes.Clone(enc) // the caller's buffer is reused; the record may alias it
	rec, err := records.Decode(enc)
	if err != nil {
		return putResult{status: storeInvalid, err: fmt.Errorf("decode: %w", err)}
	}
	return st.putRecord(now, key, rec, enc, src)
}

// putRecord stores a decoded record; enc (its encoding) is kept, not copied.
func (st *recordStore) putRecord(now int64, key identity.Key, rec *records.Record, enc []byte, src netip.Addr) putResult {
	if rec.Key() != key {
		return putResult{status: storeInvalid, err: fmt.Errorf("record key %s under %s: %w", rec.Key(), key, ErrBadRecord)}
	}
	if err := records.Verify(rec, unixTime(now)); err != nil {
		return putResult{status: storeInvalid, err: fmt.Errorf("verify: %w", err)}
	}
	sl := st.m[key]
	idx := -1 // record of the same publisher (or the single secured record)
	if sl != nil {
		for i, s := range sl.recs {
			if rec.Name.Secured || bytes.Equal(s.rec.PublicKey, rec.PublicKey) {
				idx = i
				break
			}
		}
	}
	if idx >= 0 && !records.Newer(rec, sl.recs[idx].rec) {
		return putResult{status: storeStale, err: fmt.Errorf("seq %d not newer than %d: %w", rec.Seq, sl.recs[idx].rec.Seq, ErrBadRecord)}
	}
	if idx < 0 && sl != nil && len(sl.recs) >= st.maxPub {
		// Unsecured name with all publisher slots taken: replace the stalest
		// publisher if the newcomer was issued later. A source that already
		// holds half the slots may only replace its own records, so a flood
		// from one address cannot push every other publisher out.
		own := src.IsValid() && sl.fromSource(src) >= max(1, st.maxPub/2)
		old := -1
		for i, s := range sl.recs {
			if own && s.source != src {
				continue
			}
			if old < 0 || s.rec.Issued.Before(sl.recs[old].rec.Issued) {
				old = i
			}
		}
		if !rec.Issued.After(sl.recs[old].rec.Issued) {
			return putResult{status: storeFull, err: fmt.Errorf("publisher slots of %s full: %w", key, ErrBadRecord)}
		}
		idx = old
	}
	grow := len(enc)
	if idx >= 0 {
		grow -= len(sl.recs[idx].enc)
	}
	if idx < 0 && st.count >= st.maxRecords || st.bytes+grow > st.maxBytes {
		st.expire(now)
		if idx < 0 && st.count >= st.maxRecords || st.bytes+grow > st.maxBytes {
			return putResult{status: storeFull, err: fmt.Errorf("record store full: %w", ErrBadRecord)}
		}
	}
	if src.IsValid() && st.perSource[src] >= st.maxSource && (idx < 0 || sl.recs[idx].source != src) {
		return putResult{status: storeFull, err: fmt.Errorf("source %s over its quota: %w", src, ErrBadRecord)}
	}
	if src.IsValid() && st.perPub[string(rec.PublicKey)] >= st.maxPerPub &&
		(idx < 0 || !sl.recs[idx].source.IsValid() || !bytes.Equal(sl.recs[idx].rec.PublicKey, rec.PublicKey)) {
		return putResult{status: storeFull, err: fmt.Errorf("publisher key over its quota of %d records: %w", st.maxPerPub, ErrBadRecord)}
	}
	sr := &storedRecord{rec: slimRecord(rec), enc: enc, expires: rec.Expires.UnixNano(), source: src}
	if sl == nil {
		sl = &slot{}
		st.m[key] = sl
	}
	if idx >= 0 {
		st.drop(sl.recs[idx])
		sl.recs[idx] = sr
	} else {
		sl.recs = append(sl.recs, sr)
	}
	st.count++
	st.bytes += len(sr.enc)
	if src.IsValid() {
		st.perSource[src]++
		st.perPub[string(rec.PublicKey)]++
	}
	return putResult{status: storeOK, changed: true}
}

// drop forgets a stored record's accounting (the caller unlinks it).
func (st *recordStore) drop(s *storedRecord) {
	st.count--
	st.bytes -= len(s.enc)
	if s.source.IsValid() {
		if st.perSource[s.source]--; st.perSource[s.source] <= 0 {
			delete(st.perSource, s.source)
		}
		pk := string(s.rec.PublicKey)
		if st.perPub[pk]--; st.perPub[pk] <= 0 {
			delete(st.perPub, pk)
		}
	}
}

// expire removes records whose expiry has passed.
func (st *recordStore) expire(now int64) {
	for k, sl := range st.m {
		kept := sl.recs[:0]
		for _, s := range sl.recs {
			if s.expires > now {
				kept = append(kept, s)
			} else {
				st.drop(s)
			}
		}
		clear(sl.recs[len(kept):])
		sl.recs = kept
		if len(kept) == 0 {
			delete(st.m, k)
		}
	}
}

// get returns the unexpired records under key (withdrawals included).
func (st *recordStore) get(key identity.Key, now int64) []*storedRecord {
	sl := st.m[key]
	if sl == nil {
		return nil
	}
	out := make([]*storedRecord, 0, len(sl.recs))
	for _, s := range sl.recs {
		if s.expires > now {
			out = append(out, s)
		}
	}
	return out
}

// fromSource counts the records of the slot received from src.
func (sl *slot) fromSource(src netip.Addr) int {
	n := 0
	for _, s := range sl.recs {
		if s.source == src {
			n++
		}
	}
	return n
}

// live reports whether key has an unexpired, not withdrawn record.
func (sl *slot) live(now int64) bool {
	for _, s := range sl.recs {
		if s.expires > now && !s.rec.Withdrawn {
			return true
		}
	}
	return false
}

// nearestKeys returns up to n registered keys closest (XOR) to target.
func (st *recordStore) nearestKeys(target identity.Key, n int, now int64) []identity.Key {
	var out []identity.Key
	for k, sl := range st.m {
		if !sl.live(now) {
			continue
		}
		if len(out) == n && !closer(k, out[n-1], target) {
			continue
		}
		pos := len(out)
		for pos > 0 && closer(k, out[pos-1], target) {
			pos--
		}
		if len(out) < n {
			out = append(out, identity.Key{})
		}
		copy(out[pos+1:], out[pos:len(out)-1])
		out[pos] = k
	}
	return out
}

// rangeKeys returns up to limit registered keys in [lo, hi], ascending, and
// whether more exist.
func (st *recordStore) rangeKeys(lo, hi identity.Key, limit int, now int64) ([]identity.Key, bool) {
	var out []identity.Key
	for k, sl := range st.m {
		if compareKeys(k, lo) >= 0 && compareKeys(k, hi) <= 0 && sl.live(now) {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareKeys)
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// sortedKeys returns the stored keys in ascending order (deterministic iteration).
func (st *recordStore) sortedKeys() []identity.Key {
	out := make([]identity.Key, 0, len(st.m))
	for k := range st.m {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKeys)
	return out
}

func (st *recordStore) maxSourceCount() int {
	m := 0
	for _, n := range st.perSource {
		m = max(m, n)
	}
	return m
}

// slimRecord copies a decoded record into exactly sized storage, so that a
// stored record does not pin records.Decode's fixed-capacity arrays (~1 KiB).
func slimRecord(r *records.Record) *records.Record {
	out := *r
	out.Endpoints = slices.Clip(slices.Clone(r.Endpoints))
	out.Services = slices.Clip(slices.Clone(r.Services))
	out.TXT = slices.Clip(slices.Clone(r.TXT))
	return &out
}
