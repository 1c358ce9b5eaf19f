package peername

import (
	"os"
	"testing"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

func TestMain(m *testing.M) {
	clog.Discard()
	os.Exit(m.Run())
}
