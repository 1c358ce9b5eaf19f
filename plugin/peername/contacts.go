package peername

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/peername/peername/contacts"
)

// contactsLabel is the label under the zone where petnames live:
// PETNAME.contacts.ZONE answers with the records of the contact's secured
// name (and _svc._proto.PETNAME.contacts.ZONE with its services).
const contactsLabel = "contacts"

// contactBook serves petnames from a contacts file (package contacts),
// read again whenever the file changes, so a contact saved by `peername
// accept -save` resolves without a reload.
type contactBook struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	book  *contacts.Book
}

// contactTarget is the outcome of a query under contacts.ZONE.
type contactTarget int

const (
	notContact   contactTarget = iota // not under contacts.ZONE
	contactsNode                      // contacts.ZONE itself: an empty non-terminal
	noContact                         // no such petname
	contactFound                      // target holds the secured name to look up
)

// target maps qname (lowercase, under zone) to the secured name it stands
// for. An unreadable or malformed file is an error: the answer is SERVFAIL,
// not a false NXDOMAIN.
func (cb *contactBook) target(qname, zone string) (kind contactTarget, target string, err error) {
	rel := strings.TrimSuffix(qname, zone)
	if !strings.HasSuffix(rel, contactsLabel+".") {
		return notContact, "", nil
	}
	labels := dns.SplitDomainName(rel)
	n := len(labels)
	if n == 0 || labels[n-1] != contactsLabel {
		return notContact, "", nil
	}
	var prefix string
	switch {
	case n == 1:
		return contactsNode, "", nil
	case n == 2:
	case n == 4 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
		prefix = labels[0] + "." + labels[1] + "."
	default:
		return noContact, "", nil
	}
	b, err := cb.load()
	if err != nil {
		return noContact, "", err
	}
	name, ok := b.Lookup(labels[n-2])
	if !ok {
		return noContact, "", nil
	}
	return contactFound, prefix + name.Classifier + "." + name.Authority.String() + "." + zone, nil
}

// load returns the book, reading the file again if it changed.
func (cb *contactBook) load() (*contacts.Book, error) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	fi, err := os.Stat(cb.path)
	switch {
	case os.IsNotExist(err):
		fi = nil
	case err != nil:
		return nil, fmt.Errorf("contacts %s: %w", cb.path, err)
	}
	var mtime time.Time
	var size int64 = -1
	if fi != nil {
		mtime, size = fi.ModTime(), fi.Size()
	}
	if cb.book != nil && mtime.Equal(cb.mtime) && size == cb.size {
		return cb.book, nil
	}
	b, err := contacts.Load(cb.path)
	if err != nil {
		return nil, err
	}
	cb.book, cb.mtime, cb.size = b, mtime, size
	return b, nil
}
