package sim

import (
	"testing"
)

func TestHostileKindNames(t *testing.T) {
	t.Parallel()
	for k := HostileNone; k <= HostileChurn; k++ {
		got, ok := ParseHostileKind(k.String())
		if !ok || got != k {
			t.Errorf("ParseHostileKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
	if _, ok := ParseHostileKind("unknown"); ok {
		t.Error(`ParseHostileKind("unknown") succeeded`)
	}
}
