package contacts

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peername/peername/identity"
)

func secured(t testing.TB, classifier string) identity.Name {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, err := identity.NewSecuredName(classifier, id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBook(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", FileName)
	b, err := Load(path)
	if err != nil || len(b.List()) != 0 {
		t.Fatalf("missing file: %v, %v", b.List(), err)
	}
	alice, bob := secured(t, "laptop"), secured(t, "desk")
	if err := b.Add("Alice", alice); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("bob", bob); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("alice", alice); err != nil {
		t.Fatalf("adding the same contact again: %v", err)
	}
	if err := b.Add("alice", bob); !errors.Is(err, ErrExists) {
		t.Fatalf("rebinding alice: %v, want ErrExists", err)
	}
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
	b2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := b2.Lookup("ALICE"); !ok || n != alice {
		t.Fatalf("Lookup(ALICE) = %v, %v", n, ok)
	}
	if _, ok := b2.Lookup("carol"); ok {
		t.Fatal("Lookup(carol) found something")
	}
	if l := b2.List(); len(l) != 2 || l[0].Petname != "alice" || l[1].Petname != "bob" {
		t.Fatalf("List = %v", l)
	}
	if err := b2.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	if err := b2.Remove("alice"); !errors.Is(err, ErrNoContact) {
		t.Fatalf("second remove: %v, want ErrNoContact", err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "alice "+alice.String()+"\n") {
		t.Fatalf("file:\n%s", data)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	n := secured(t, "laptop")
	good := "# comment\n\nalice " + n.String() + "\n  bob   " + strings.ToUpper(n.String()) + ".peer.alt.  \n"
	cs, err := Parse([]byte(good))
	if err != nil || len(cs) != 2 || cs[0].Name != n || cs[1].Name != n {
		t.Fatalf("Parse = %v, %v", cs, err)
	}
	for _, bad := range []string{
		"alice",
		"alice " + n.String() + " extra",
		"-alice " + n.String(),
		"al_ice " + n.String(),
		"alice laptop.0",
		"alice laptop",
		"alice " + n.String() + "\nALICE " + n.String(),
		strings.Repeat("a", 64) + " " + n.String(),
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrBadLine) {
			t.Errorf("Parse(%q) error %v, want ErrBadLine", bad, err)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	t.Parallel()
	if p, _ := DefaultPath("/var/lib/peername"); p != "/var/lib/peername/contacts" {
		t.Fatalf("DefaultPath(state) = %s", p)
	}
}

// FuzzParse checks that no contacts file panics the parser and that what it
// accepts formats and parses back to the same contacts.
func FuzzParse(f *testing.F) {
	n := secured(f, "laptop")
	f.Add([]byte("alice " + n.String() + "\n"))
	f.Add([]byte("# x\nbob " + n.String() + ".peer.alt.\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := Parse(data)
		if err != nil {
			return
		}
		back, err := Parse(Format(cs))
		if err != nil || len(back) != len(cs) {
			t.Fatalf("round trip: %v, %v", back, err)
		}
		for i := range cs {
			if back[i] != cs[i] {
				t.Fatalf("round trip %v -> %v", cs[i], back[i])
			}
		}
	})
}
