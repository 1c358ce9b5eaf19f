package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Errors about key files; test for them with errors.Is.
var (
	// ErrKeyFilePermissions: the private key file can be read by other users.
	ErrKeyFilePermissions = errors.New("private key file is accessible by group or others")
	// ErrBadKeyFile: the file is not an Ed25519 private key we can read.
	ErrBadKeyFile = errors.New("not a usable Ed25519 private key")
)

const (
	pemPKCS8   = "PRIVATE KEY"
	pemOpenSSH = "OPENSSH PRIVATE KEY"
	// maxKeyFileSize bounds what LoadFile reads; real key files are < 1 KiB.
	maxKeyFileSize = 64 << 10
)

// ParseKey parses an Ed25519 private key from a PEM file's contents: PKCS#8
// ("PRIVATE KEY", as SaveFile and `openssl genpkey -algorithm ed25519` write)
// or an unencrypted OpenSSH key ("OPENSSH PRIVATE KEY", as ssh-keygen -t
// ed25519 writes). Anything else is refused with ErrBadKeyFile.
func ParseKey(data []byte) (*Identity, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found: %w", ErrBadKeyFile)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the %q PEM block: %w", block.Type, ErrBadKeyFile)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("PEM headers present (an encrypted key?): %w", ErrBadKeyFile)
	}
	switch block.Type {
	case pemPKCS8:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKCS#8: %v: %w", err, ErrBadKeyFile)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is %T, want Ed25519: %w", k, ErrBadKeyFile)
		}
		return fromPrivate(priv), nil
	case pemOpenSSH:
		k, err := ssh.ParseRawPrivateKey(data)
		if err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, fmt.Errorf("OpenSSH key is encrypted; remove the passphrase with `ssh-keygen -p -N '' -f FILE` on a copy: %w", ErrBadKeyFile)
			}
			return nil, fmt.Errorf("OpenSSH: %v: %w", err, ErrBadKeyFile)
		}
		var priv ed25519.PrivateKey
		switch k := k.(type) {
		case *ed25519.PrivateKey:
			priv = *k
		case ed25519.PrivateKey:
			priv = k
		default:
			return nil, fmt.Errorf("OpenSSH key is %T, want ed25519 (ssh-keygen -t ed25519): %w", k, ErrBadKeyFile)
		}
		if len(priv) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("OpenSSH ed25519 key of %d bytes: %w", len(priv), ErrBadKeyFile)
		}
		// Check the stored public half matches the seed, so a tampered file
		// cannot make us claim an authority we cannot sign for.
		derived := ed25519.NewKeyFromSeed(priv.Seed())
		if !bytes.Equal(derived, priv) {
			return nil, fmt.Errorf("OpenSSH key's public half does not match its seed: %w", ErrBadKeyFile)
		}
		return fromPrivate(derived), nil
	default:
		return nil, fmt.Errorf("PEM block %q, want %q or %q: %w", block.Type, pemPKCS8, pemOpenSSH, ErrBadKeyFile)
	}
}

// MarshalPKCS8 returns the identity's private key as a PKCS#8 PEM document.
func (id *Identity) MarshalPKCS8() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(id.priv)
	if err != nil {
		return nil, fmt.Errorf("identity: encode PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// LoadFile reads a private key file (see ParseKey). Like OpenSSH, it refuses
// a file that its group or other users can access (ErrKeyFilePermissions).
func LoadFile(path string) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("identity: %s is not a regular file: %w", path, ErrBadKeyFile)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s has mode %04o; fix it with `chmod 600 %s`: %w", path, perm, path, ErrKeyFilePermissions)
	}
	if st.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("identity: %s is %d bytes, too large for a key file: %w", path, st.Size(), ErrBadKeyFile)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	id, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return id, nil
}

// SaveFile writes the identity's private key to path as PKCS#8 PEM with mode
// 0600. It never replaces an existing file (the error wraps fs.ErrExist), and
// a crash leaves either no file or the whole key at path.
func (id *Identity) SaveFile(path string) error {
	data, err := id.MarshalPKCS8()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".peername-key-*")
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	// CreateTemp makes the file 0600 already; be explicit.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	// Link fails if path exists, so a concurrent writer cannot be clobbered.
	if err := os.Link(tmpName, path); err != nil {
		return fmt.Errorf("identity: save key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadOrCreate loads the key file at path, or, if there is none, generates a
// new identity and saves it there with mode 0600 (created is then true).
func LoadOrCreate(path string) (id *Identity, created bool, err error) {
	id, err = LoadFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, false, err
	}
	id, err = Generate(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	if err := id.SaveFile(path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process created it first
			id, err = LoadFile(path)
			return id, false, err
		}
		return nil, false, err
	}
	return id, true, nil
}
