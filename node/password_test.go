package node

import "testing"

var testKDF = KDFParams{Time: 1, Memory: 1024, Threads: 1}

func TestPassword_HashAndCheck(t *testing.T) {
	h, err := hashPassword("correct horse", testKDF)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct hors", false}, {"", false}} {
		got, err := checkPassword(tc.pw, h)
		if err != nil || got != tc.want {
			t.Errorf("checkPassword(%q) = %v, %v; want %v", tc.pw, got, err, tc.want)
		}
	}
	h2, _ := hashPassword("correct horse", testKDF)
	if string(h) == string(h2) {
		t.Errorf("two hashes of one password are equal: salts not random")
	}
}

func TestPassword_CheckMalformed(t *testing.T) {
	for _, s := range []string{"", "$argon2id$", "$argon2i$v=19$m=1,t=1,p=1$aa$bb",
		"$argon2id$v=19$m=1024,t=1,p=0$c2FsdA$a2V5"} {
		if _, err := checkPassword("x", []byte(s)); err == nil {
			t.Errorf("checkPassword on %q: got nil error, want errBadHash", s)
		}
	}
}

func TestToken_Unique(t *testing.T) {
	a, ha, _ := newToken()
	b, hb, _ := newToken()
	if a == b || string(ha) == string(hb) {
		t.Fatalf("two tokens are equal")
	}
	if string(tokenHash(a)) != string(ha) {
		t.Fatalf("tokenHash does not match the hash newToken returned")
	}
}
