package invite

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestCodeRoundTrip(t *testing.T) {
	t.Parallel()
	for range 1000 {
		c, err := Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s := c.String()
		if len(s) != CodeChars+2 || s[4] != '-' || s[9] != '-' {
			t.Fatalf("code %q: want XXXX-XXXX-XXXXX", s)
		}
		for _, in := range []string{s, strings.ToLower(s), c.Compact(), " " + strings.ReplaceAll(s, "-", " ") + " ",
			strings.NewReplacer("0", "o", "1", "l").Replace(s), strings.NewReplacer("0", "O", "1", "i").Replace(s)} {
			got, err := Parse(in)
			if err != nil || got != c {
				t.Fatalf("Parse(%q) = %v, %v; want %v", in, got, err, c)
			}
		}
	}
}

// The expected strings were computed independently (a Python script with
// explicit powers of α instead of Horner's rule, in docs/invitations.md).
func TestCodeVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    uint64
		want string
	}{
		{0, "0000-0000-00000"},
		{1, "0000-0000-00012"},
		{0x0123456789abcdef, "28T5-CY4T-QKFF4"},
		{1<<60 - 1, "ZZZZ-ZZZZ-ZZZZR"},
	} {
		c := CodeFromUint64(tc.v)
		if got := c.String(); got != tc.want {
			t.Errorf("code %#x = %s, want %s", tc.v, got, tc.want)
		}
	}
}

// Every single wrong character and every swap of two different characters
// (adjacent or not) is caught by the check character.
func TestCheckCatchesTypos(t *testing.T) {
	t.Parallel()
	for range 200 {
		c, _ := Generate(rand.Reader)
		s := []byte(c.Compact())
		for i := range s {
			for _, a := range []byte(Alphabet) {
				if a == s[i] {
					continue
				}
				m := append([]byte{}, s...)
				m[i] = a
				if _, err := Parse(string(m)); !errors.Is(err, ErrCodeCheck) {
					t.Fatalf("%s with position %d as %c: error %v, want ErrCodeCheck", s, i, a, err)
				}
			}
			for j := i + 1; j < len(s); j++ {
				if s[i] == s[j] {
					continue
				}
				m := append([]byte{}, s...)
				m[i], m[j] = m[j], m[i]
				if _, err := Parse(string(m)); !errors.Is(err, ErrCodeCheck) {
					t.Fatalf("%s with %d and %d swapped: error %v, want ErrCodeCheck", s, i, j, err)
				}
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	good := CodeFromUint64(0x0123456789abcdef).String()
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ErrCodeLength},
		{good[:len(good)-1], ErrCodeLength},
		{good + "0", ErrCodeLength},
		{good + good, ErrCodeLength},
		{strings.Replace(good, "T", "U", 1), ErrCodeChar},
		{strings.Replace(good, "T", "*", 1), ErrCodeChar},
		{strings.Replace(good, "T", "é", 1), ErrCodeChar},
		{good[:5] + "_" + good[5:], ErrCodeChar},
		{strings.Replace(good, "2", "3", 1), ErrCodeCheck},
	} {
		if _, err := Parse(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("Parse(%q) error = %v, want %v", tc.in, err, tc.want)
		}
	}
}
