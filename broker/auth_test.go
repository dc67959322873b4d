package broker

import (
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/conf"
)

func mustHash(t testing.TB, pw string) conf.Secret {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return conf.Secret(h)
}

func TestAuthenticator(t *testing.T) {
	users := []conf.User{{Username: "u1", PasswordHash: mustHash(t, "p1")}, {Username: "u2", PasswordHash: mustHash(t, "p2")}}
	for _, tc := range []struct {
		anonymous bool
		users     []conf.User
		user, pw  string
		want      bool
	}{
		{false, nil, "", "", false},
		{false, nil, "u1", "p1", false},
		{true, nil, "", "", true},
		{true, nil, "anyone", "anything", true}, // no users: names are not checked
		{false, users, "u1", "p1", true},
		{false, users, "u2", "p2", true},
		{false, users, "u1", "p2", false},
		{false, users, "nobody", "p1", false},
		{false, users, "", "", false},
		{true, users, "", "", true},
		{true, users, "u1", "bad", false}, // a name given must be right
		{true, users, "nobody", "p1", false},
	} {
		au, err := newAuthenticator(conf.BrokerAuth{AllowAnonymous: tc.anonymous, Users: tc.users})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second answer comes from the cache
			if got := au.check([]byte(tc.user), []byte(tc.pw)); got != tc.want {
				t.Errorf("anonymous %v, %d users: check(%q, %q) = %v, want %v", tc.anonymous, len(tc.users), tc.user, tc.pw, got, tc.want)
			}
		}
	}
}

func TestAuthenticatorCachesVerdicts(t *testing.T) {
	au, err := newAuthenticator(conf.BrokerAuth{Users: []conf.User{{Username: "u", PasswordHash: mustHash(t, "right")}}})
	if err != nil {
		t.Fatal(err)
	}
	var compares atomic.Int64
	au.compare = func(h, pw []byte) error { compares.Add(1); return bcrypt.CompareHashAndPassword(h, pw) }
	for range 100 {
		if !au.check([]byte("u"), []byte("right")) || au.check([]byte("u"), []byte("wrong")) || au.check([]byte("x"), []byte("right")) {
			t.Fatal("wrong verdict")
		}
	}
	if n := compares.Load(); n != 3 {
		t.Fatalf("%d bcrypt comparisons for 3 distinct (user, password) pairs, want 3", n)
	}
	// (user, password) boundaries are part of the key.
	if au.check([]byte("ur"), []byte("ight")) {
		t.Fatal("a shifted split of the same bytes was accepted")
	}
	// The cache stays bounded.
	au.compare = func([]byte, []byte) error { return bcrypt.ErrMismatchedHashAndPassword }
	for i := range 2*cacheGeneration + 1 {
		au.check([]byte("u"), []byte{byte(i), byte(i >> 8), byte(i >> 16)})
	}
	if n := len(au.cache[0]) + len(au.cache[1]); n > 2*cacheGeneration {
		t.Fatalf("cache holds %d verdicts, more than %d", n, 2*cacheGeneration)
	}
}
