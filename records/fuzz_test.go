package records

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"
)

// FuzzDecode checks that Decode never panics and is canonical: whatever it
// accepts re-encodes to exactly the input, so no record has two encodings.
func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		b, _ := hex.DecodeString(v.encHex + v.sigHex)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(mustEncode(f, maximal(f, seededID(1))))
	f.Add([]byte{Version})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical encoding accepted:\n in %x\nout %x", b, again)
		}
		_ = Verify(r, time.Unix(1764072000, 0))
		_ = Newer(r, r)
	})
}
