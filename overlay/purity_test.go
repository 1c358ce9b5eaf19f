package overlay

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The core is a deterministic state machine that does no I/O (doc.go): these
// tests make the compiler's view of it match that promise, so a change that
// reaches for a socket, a file, the wall clock or a goroutine fails here.

// forbiddenImport reports why the core may not import path directly.
func forbiddenImport(path string) (string, bool) {
	switch {
	case path == "net/netip":
		return "", false
	case path == "net" || strings.HasPrefix(path, "net/"):
		return "network I/O belongs to the driver (overlay/node)", true
	case path == "os" || strings.HasPrefix(path, "os/") || path == "syscall" || path == "io/fs" || path == "path/filepath":
		return "files and processes belong to the driver", true
	case path == "crypto/rand":
		return "randomness comes only from Config.Seed", true
	case path == "log" || path == "log/slog":
		return "the core reports through Stats and completions, not logs", true
	case strings.HasPrefix(path, "github.com/peername/peername/") && !isCoreDep(path):
		return "the core depends on identity and records only", true
	}
	return "", false
}

func isCoreDep(path string) bool {
	switch strings.TrimPrefix(path, "github.com/peername/peername/") {
	case "identity", "records":
		return true
	}
	return false
}

// forbiddenCalls are the time functions that read the wall clock or wait.
var forbiddenCalls = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true,
}

// coreFiles parses the package's non-test files.
func coreFiles(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := make(map[string]*ast.File)
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = f
	}
	if len(files) == 0 {
		t.Fatal("no core files found")
	}
	return fset, files
}

// impurities lists what in f breaks the core's rules.
func impurities(fset *token.FileSet, f *ast.File) []string {
	var out []string
	timeName := ""
	for _, im := range f.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		if why, bad := forbiddenImport(path); bad {
			out = append(out, fset.Position(im.Pos()).String()+": imports "+path+": "+why)
		}
		if path == "time" {
			timeName = "time"
			if im.Name != nil {
				timeName = im.Name.Name
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			out = append(out, fset.Position(n.Pos()).String()+": starts a goroutine: the drivers own every goroutine")
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && forbiddenCalls[n.Sel.Name] {
				out = append(out, fset.Position(n.Pos()).String()+": uses time."+n.Sel.Name+": time comes only from the event")
			}
		}
		return true
	})
	return out
}

func TestCoreIsPure(t *testing.T) {
	t.Parallel()
	fset, files := coreFiles(t)
	for _, f := range files {
		for _, bad := range impurities(fset, f) {
			t.Error(bad)
		}
	}
}

// TestImpuritiesAreCaught: the checker itself finds each kind of violation.
func TestImpuritiesAreCaught(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, src string }{
		{"dial", "package overlay\nimport \"net\"\nfunc f() { net.Dial(\"udp\", \"x\") }\n"},
		{"file", "package overlay\nimport \"os\"\nfunc f() { os.Exit(1) }\n"},
		{"clock", "package overlay\nimport \"time\"\nfunc f() time.Time { return time.Now() }\n"},
		{"renamed clock", "package overlay\nimport tm \"time\"\nfunc f() { tm.Sleep(1) }\n"},
		{"goroutine", "package overlay\nfunc f() { go f() }\n"},
		{"entropy", "package overlay\nimport _ \"crypto/rand\"\n"},
		{"driver", "package overlay\nimport _ \"github.com/peername/peername/overlay/state\"\n"},
	}
	for _, tt := range tests {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, tt.name+".go", tt.src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if len(impurities(fset, f)) == 0 {
			t.Errorf("%s: not caught", tt.name)
		}
	}
	fset := token.NewFileSet()
	f, _ := parser.ParseFile(fset, "ok.go", "package overlay\nimport (\"net/netip\"; \"time\")\nfunc f(ns int64) (time.Time, netip.Addr) { return time.Unix(0, ns), netip.Addr{} }\n", 0)
	if bad := impurities(fset, f); len(bad) != 0 {
		t.Errorf("pure code flagged: %v", bad)
	}
}

// TestDependencies: neither the core nor the simulator links the driver, its
// state database or its network libraries, whatever their own imports say.
func TestDependencies(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".", "./sim").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"go.etcd.io/bbolt", "golang.org/x/net/", "github.com/peername/peername/overlay/state",
			"github.com/peername/peername/overlay/node", "github.com/peername/peername/overlay/bootstrap",
			"github.com/peername/peername/plugin", "github.com/coredns/"} {
			if dep == strings.TrimSuffix(bad, "/") || strings.HasPrefix(dep, bad) {
				t.Errorf("overlay or overlay/sim depends on %s", dep)
			}
		}
	}
}
