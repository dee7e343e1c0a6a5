package node

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// KDFParams are argon2id's cost parameters. x/crypto's argon2 is used
// rather than our own: it is the reference implementation, maintained by
// the Go team.
type KDFParams struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultKDF follows the OWASP minimum for argon2id (19 MiB, 2 passes).
var DefaultKDF = KDFParams{Time: 2, Memory: 19 * 1024, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// errBadHash means a stored hash is not in the format hashPassword writes.
var errBadHash = errors.New("node: malformed password hash")

// hashPassword returns the PHC-style encoding of an argon2id hash of pw
// with a fresh random salt:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<key>.
func hashPassword(pw string, p KDFParams) ([]byte, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Appendf(nil, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.Memory, p.Time, p.Threads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// checkPassword reports whether pw matches the stored hash, in constant
// time over the derived key.
func checkPassword(pw string, stored []byte) (bool, error) {
	parts := strings.Split(string(stored), "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var v int
	var p KDFParams
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d",
		&p.Memory, &p.Time, &p.Threads); err != nil {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || p.Threads == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// newToken returns a session token from crypto/rand and the hash under
// which the state machine stores it; the token itself is never stored.
func newToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, tokenHash(token), nil
}

// tokenHash is the stored form of a token. Tokens carry 256 random bits,
// so a plain SHA-256 suffices: there is nothing to brute-force.
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
