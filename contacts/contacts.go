// Package contacts keeps a peer's petnames: the local, human-chosen names
// ("alice", "helpdesk") it gives to other peers' secured names, typically
// after an invitation (see package invite). The file is text, one contact a
// line:
//
//	# comment
//	PETNAME CLASSIFIER.AUTHORITY
//
// A petname is one DNS label (letters, digits, hyphens, case-folded), so a
// DNS front end can answer PETNAME.contacts.ZONE with the records of the
// contact's secured name; Book.Lookup is that query. Names are written
// without a zone. The default file is $XDG_CONFIG_HOME/peername/contacts
// (~/.config/peername/contacts), or DIR/contacts for a -state DIR.
package contacts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peername/peername/identity"
)

// FileName is the contacts file's name in its directory.
const FileName = "contacts"

// Errors; each is wrapped with details, test with errors.Is.
var (
	ErrBadPetname = errors.New("bad petname")
	ErrBadLine    = errors.New("bad contacts line")
	ErrExists     = errors.New("petname already names another contact")
	ErrNoContact  = errors.New("no such contact")
)

// Contact binds a petname to a secured peer name.
type Contact struct {
	Petname string
	Name    identity.Name
}

// Book is a contacts file in memory. Its methods are not safe for concurrent
// use; a server that answers lookups loads a Book and replaces it whole.
type Book struct {
	path     string
	contacts []Contact // sorted by petname
}

// DefaultPath returns the contacts file for stateDir (DIR/contacts) or,
// when stateDir is empty, the user's (~/.config/peername/contacts).
func DefaultPath(stateDir string) (string, error) {
	if stateDir != "" {
		return filepath.Join(stateDir, FileName), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("contacts: %w", err)
	}
	return filepath.Join(dir, "peername", FileName), nil
}

// Load reads the contacts file at path; a missing file is an empty book.
func Load(path string) (*Book, error) {
	b := &Book{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	if b.contacts, err = Parse(data); err != nil {
		return nil, fmt.Errorf("contacts: %s: %w", path, err)
	}
	return b, nil
}

// Parse reads the file format: blank lines and lines starting with # are
// ignored; every other line is PETNAME NAME. A petname may appear once.
func Parse(data []byte) ([]Contact, error) {
	var out []Contact
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<16)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w %d: want PETNAME NAME", ErrBadLine, line)
		}
		c, err := NewContact(f[0], f[1])
		if err != nil {
			return nil, fmt.Errorf("%w %d: %w", ErrBadLine, line, err)
		}
		if i, found := find(out, c.Petname); found {
			return nil, fmt.Errorf("%w %d: petname %q given twice", ErrBadLine, line, out[i].Petname)
		} else {
			out = slices.Insert(out, i, c)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadLine, err)
	}
	return out, nil
}

// Format writes contacts in the file format, with a header comment.
func Format(cs []Contact) []byte {
	var b bytes.Buffer
	b.WriteString("# peername contacts: PETNAME NAME (a secured name, without the zone)\n")
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %s\n", c.Petname, c.Name)
	}
	return b.Bytes()
}

// NewContact checks a petname and a secured name (CLASSIFIER.AUTHORITY, with
// or without a zone after it: anything past the authority label is
// ignored).
func NewContact(petname, name string) (Contact, error) {
	p, err := CheckPetname(petname)
	if err != nil {
		return Contact{}, err
	}
	n, err := ParseSecuredName(name)
	if err != nil {
		return Contact{}, err
	}
	return Contact{Petname: p, Name: n}, nil
}

// ParseSecuredName reads CLASSIFIER.AUTHORITY[.ZONE...].
func ParseSecuredName(s string) (identity.Name, error) {
	labels := strings.SplitN(strings.TrimSuffix(s, "."), ".", 3)
	if len(labels) < 2 {
		return identity.Name{}, fmt.Errorf("%q: want CLASSIFIER.AUTHORITY: %w", s, identity.ErrBadName)
	}
	a, err := identity.ParseAuthority(labels[1])
	if err != nil {
		return identity.Name{}, fmt.Errorf("%q: %w (only secured names can be contacts)", s, err)
	}
	n, err := identity.ParseName(labels[0]+"."+a.String()+"."+identity.DefaultZone, "")
	if err != nil {
		return identity.Name{}, fmt.Errorf("%q: %w", s, err)
	}
	return n, nil
}

// CheckPetname returns p case-folded if it is one DNS label of letters,
// digits and hyphens (not at either end), at most 63 characters.
func CheckPetname(p string) (string, error) {
	if len(p) == 0 || len(p) > 63 {
		return "", fmt.Errorf("%w %q: 1 to 63 characters", ErrBadPetname, p)
	}
	b := []byte(p)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(b)-1:
		default:
			return "", fmt.Errorf("%w %q: letters, digits and inner hyphens only", ErrBadPetname, p)
		}
	}
	return string(b), nil
}

func find(cs []Contact, petname string) (int, bool) {
	return slices.BinarySearchFunc(cs, petname, func(c Contact, p string) int { return strings.Compare(c.Petname, p) })
}

// Path returns the file the book was loaded from.
func (b *Book) Path() string { return b.path }

// List returns the contacts sorted by petname.
func (b *Book) List() []Contact { return slices.Clone(b.contacts) }

// Lookup returns the secured name of petname (any case).
func (b *Book) Lookup(petname string) (identity.Name, bool) {
	p, err := CheckPetname(petname)
	if err != nil {
		return identity.Name{}, false
	}
	if i, ok := find(b.contacts, p); ok {
		return b.contacts[i].Name, true
	}
	return identity.Name{}, false
}

// Add binds petname to name. Adding the same binding again is a no-op;
// binding a petname in use to another name is ErrExists (remove it first).
func (b *Book) Add(petname string, name identity.Name) error {
	p, err := CheckPetname(petname)
	if err != nil {
		return err
	}
	if !name.Secured || !name.Valid() {
		return fmt.Errorf("contacts: %s: only secured names can be contacts: %w", name, identity.ErrBadName)
	}
	i, ok := find(b.contacts, p)
	if ok {
		if b.contacts[i].Name == name {
			return nil
		}
		return fmt.Errorf("contacts: %s is %s: %w", p, b.contacts[i].Name, ErrExists)
	}
	b.contacts = slices.Insert(b.contacts, i, Contact{Petname: p, Name: name})
	return nil
}

// Remove deletes petname.
func (b *Book) Remove(petname string) error {
	p, err := CheckPetname(petname)
	if err != nil {
		return err
	}
	i, ok := find(b.contacts, p)
	if !ok {
		return fmt.Errorf("contacts: %s: %w", p, ErrNoContact)
	}
	b.contacts = slices.Delete(b.contacts, i, i+1)
	return nil
}

// Save writes the book back to its file atomically (a temporary file
// renamed over it), mode 0600, creating the directory (0700) if needed.
func (b *Book) Save() error {
	dir := filepath.Dir(b.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("contacts: %w", err)
	}
	f, err := os.CreateTemp(dir, ".contacts-*")
	if err != nil {
		return fmt.Errorf("contacts: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(Format(b.contacts)); err != nil {
		f.Close()
		return fmt.Errorf("contacts: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("contacts: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("contacts: %w", err)
	}
	if err := os.Rename(f.Name(), b.path); err != nil {
		return fmt.Errorf("contacts: %w", err)
	}
	return nil
}
