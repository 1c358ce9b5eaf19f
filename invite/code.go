package invite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Alphabet is the code's alphabet: Douglas Crockford's base32, the digits and
// the letters without I, L, O and U. Parse also reads O as 0 and I or L as 1,
// so the look-alikes a listener may write down all mean the same symbol, and
// it ignores case, spaces and dashes.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const (
	// DataChars is the number of characters carrying the code's value: 12
	// characters of 5 bits, 60 bits.
	DataChars = 12
	// CodeChars is the number of characters of a code: the data and one
	// check character.
	CodeChars = DataChars + 1
	// Bits is the entropy of a code.
	Bits = DataChars * 5
)

// Errors of Parse, each wrapped with details; test with errors.Is. All three
// are caught locally, before any key is derived or the overlay is asked.
var (
	ErrCodeLength = errors.New("invitation code has the wrong length")
	ErrCodeChar   = errors.New("invitation code has a character outside its alphabet")
	ErrCodeCheck  = errors.New("invitation code check character does not match (a typo?)")
)

// Code is a one-time invitation code: a 60-bit secret. The zero value is a
// valid (if unwise) code; use Generate.
type Code struct{ v uint64 } // the low 60 bits

// Generate draws a new code from r (crypto/rand.Reader in production).
func Generate(r io.Reader) (Code, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Code{}, fmt.Errorf("invite: generate code: %w", err)
	}
	return Code{binary.BigEndian.Uint64(b[:]) & (1<<Bits - 1)}, nil
}

// CodeFromUint64 returns the code with value v (its low 60 bits); it exists
// for test vectors.
func CodeFromUint64(v uint64) Code { return Code{v & (1<<Bits - 1)} }

// Uint64 returns the code's 60-bit value.
func (c Code) Uint64() uint64 { return c.v }

// symbols returns the 13 symbol values: 12 data symbols, most significant
// first, then the check symbol.
func (c Code) symbols() [CodeChars]byte {
	var s [CodeChars]byte
	for i := range DataChars {
		s[i] = byte(c.v>>(5*(DataChars-1-i))) & 31
	}
	s[DataChars] = checkSymbol(s[:DataChars])
	return s
}

// Compact returns the code's 13 characters without separators, upper case.
func (c Code) Compact() string {
	s := c.symbols()
	var b [CodeChars]byte
	for i, v := range s {
		b[i] = Alphabet[v]
	}
	return string(b[:])
}

// String returns the code grouped for reading aloud: four, four and five
// characters separated by dashes, e.g. "7KQ2-M9XD-4TPAR". The last group ends
// with the check character.
func (c Code) String() string {
	s := c.Compact()
	return s[:4] + "-" + s[4:8] + "-" + s[8:]
}

// Parse reads a code as a person typed it: case, spaces and dashes do not
// matter, and O, I and L are read as 0, 1 and 1. It returns ErrCodeLength,
// ErrCodeChar or ErrCodeCheck for a code that cannot be right; the check
// character catches every single wrong character and every swap of two
// different characters.
func Parse(s string) (Code, error) {
	var sym [CodeChars]byte
	n, pos := 0, 0
	for _, r := range s {
		pos++
		switch r {
		case ' ', '-', '\t':
			continue
		}
		v, ok := symbolOf(r)
		if !ok {
			return Code{}, fmt.Errorf("%w: %q at position %d (the code uses digits and letters but no U)", ErrCodeChar, r, pos)
		}
		if n == CodeChars {
			n++
			break
		}
		sym[n] = v
		n++
	}
	if n != CodeChars {
		what := fmt.Sprintf("%d", n)
		if n > CodeChars {
			what = "more than 13"
		}
		return Code{}, fmt.Errorf("%w: %s characters, want %d (dashes and spaces do not count)", ErrCodeLength, what, CodeChars)
	}
	if syndrome(sym[:]) != 0 {
		return Code{}, fmt.Errorf("%w", ErrCodeCheck)
	}
	var v uint64
	for _, x := range sym[:DataChars] {
		v = v<<5 | uint64(x)
	}
	return Code{v}, nil
}

func symbolOf(r rune) (byte, bool) {
	if r >= 'a' && r <= 'z' {
		r -= 'a' - 'A'
	}
	switch r {
	case 'O':
		r = '0'
	case 'I', 'L':
		r = '1'
	}
	if r > 0x7f {
		return 0, false
	}
	i := strings.IndexByte(Alphabet, byte(r))
	if i < 0 {
		return 0, false
	}
	return byte(i), true
}

// The check character makes the 13 symbols c0..c12 a codeword of a
// one-symbol-check code over GF(32) (polynomial x^5 + x^2 + 1, α = x):
//
//	c12 + α^1·c11 + α^2·c10 + ... + α^12·c0 = 0
//
// The 13 weights α^0..α^12 are distinct and non-zero (α has order 31), so a
// single wrong symbol e at position j changes the sum by α^j·e ≠ 0 and a swap
// of different symbols a, b at positions j ≠ k by (α^j + α^k)(a + b) ≠ 0.

// gfMul multiplies in GF(32) modulo x^5 + x^2 + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		b >>= 1
		a <<= 1
		if a&32 != 0 {
			a ^= 0x25
		}
	}
	return p
}

// syndrome returns Σ α^(len-1-i)·s[i]; zero for a codeword.
func syndrome(s []byte) byte {
	var acc byte
	for _, x := range s { // Horner: acc = acc·α + x
		acc = gfMul(acc, 2) ^ x
	}
	return acc
}

// checkSymbol returns the symbol that, appended to data, makes a codeword:
// syndrome(data || c) = syndrome(data)·α + c = 0, so c = syndrome(data)·α.
func checkSymbol(data []byte) byte { return gfMul(syndrome(data), 2) }
