package main

import (
	"fmt"
	"testing"
)

// TestChat_Paging pages through a real server's listings with a page size
// of 2: applications after login with apps next, notices with notices,
// and public groups with g_ground as v1 did.
func TestChat_Paging(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{extra: []string{"--page-size", "2",
		"--max-page", "3", "--rate-per-minute", "600"}})
	addr := srv.clientAddr
	r := script(t, addr, `
		reg protoss 123 zelot 1 shenzhen
		login protoss 123
		create g1 -
		create g2 -
		create g3 -
	`)
	var gids []uint64
	for _, res := range r.results[2:] {
		gids = append(gids, res.num("grp_id"))
	}

	// zerg applies to all three; two others to the first.
	r = script(t, addr, fmt.Sprintf(`
		reg zerg 123 zergling 1 chengdu
		login zerg 123
		apply %d - hi
		apply %d - hi
		apply %d - hi
	`, gids[0], gids[1], gids[2]))
	zerg := r.results[0].num("uid")
	for _, name := range []string{"terran", "xel"} {
		script(t, addr, fmt.Sprintf("reg %s 123 %[1]s 1 here\nlogin %[1]s 123\napply %d - hi",
			name, gids[0]))
	}

	r = script(t, addr, fmt.Sprintf(`
		login protoss 123
		apps next
		apps next
		apps next
		apps %[1]d
		audit %[1]d %[2]d 0
		audit %[3]d %[2]d 0
		audit %[4]d %[2]d 0
		g_attr %[1]d 0
		g_attr %[3]d 0
		g_attr %[4]d 0
		g_ground
		g_ground
		g_ground 0
		g_ground -1
	`, gids[0], zerg, gids[1], gids[2]))
	if got := len(r.results[0].list("applications")); got != 2 ||
		r.results[0]["more_applications"] != true {
		t.Fatalf("got login %v, want 2 applications and more", r.results[0])
	}
	wantPage(t, r.results[1], "applications", 2, true)
	wantPage(t, r.results[2], "applications", 1, false)
	wantResult(t, r.results[3], "apps", codeUsage)
	wantPage(t, r.results[4], "applications", 2, true)
	wantPage(t, r.results[11], "groups", 2, true)
	wantPage(t, r.results[12], "groups", 1, false)
	wantPage(t, r.results[13], "groups", 2, true) // over from the start
	wantPage(t, r.results[14], "groups", 2, true)
	if a, b := r.results[11].list("groups"), r.results[14].list("groups"); a[0].num("grp_id") !=
		b[0].num("grp_id") {
		t.Errorf("got %v and %v, want g_ground -1 to start over", a, b)
	}

	// zerg's three rejections: two at login, the third with notices.
	r = script(t, addr, "login zerg 123\nnotices\nnotices\n")
	if got := len(r.results[0].list("notices")); got != 2 || r.results[0]["more_notices"] != true {
		t.Fatalf("got login %v, want 2 notices and more", r.results[0])
	}
	wantPage(t, r.results[1], "notices", 1, false)
	wantPage(t, r.results[2], "notices", 0, false)
}

// wantPage fails unless r lists n items under key and says more as given.
func wantPage(t testing.TB, r line, key string, n int, more bool) {
	t.Helper()
	if got := len(r.list(key)); got != n || r["more"] != more || r["ok"] != true {
		t.Fatalf("got %v, want %d %s and more %v", r, n, key, more)
	}
}

// TestChat_HistoryFromCursor reads v1's "his <group_id> 0" as the messages
// up to the read cursor, and "his <group_id>" as the newest.
func TestChat_HistoryFromCursor(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{extra: []string{"--rate-per-minute", "600"}})
	addr := srv.clientAddr
	r := script(t, addr, `
		reg protoss 123 zelot 1 shenzhen
		reg zerg 123 zergling 1 chengdu
		login protoss 123
		create sc2 -
	`)
	gid, zerg := r.results[3].num("grp_id"), r.results[1].num("uid")
	script(t, addr, fmt.Sprintf("login zerg 123\napply %d - hi\n", gid))
	script(t, addr, fmt.Sprintf("login protoss 123\naudit %d %d 1\n", gid, zerg))
	script(t, addr, fmt.Sprintf("login zerg 123\nchat 0 %d two\n", gid)) // read up to it
	script(t, addr, fmt.Sprintf("login protoss 123\nchat 0 %d three\n", gid))
	r = script(t, addr, fmt.Sprintf("login zerg 123\nhis %d 0\nhis %[1]d\n", gid))
	last := func(res line) string {
		ms := res.list("messages")
		if len(ms) == 0 {
			t.Fatalf("got %v, want messages", res)
		}
		return ms[len(ms)-1].str("text")
	}
	if got := last(r.results[1]); got != "two" {
		t.Errorf("got %q last with his 0, want two, at zerg's read cursor", got)
	}
	if got := last(r.results[2]); got != "three" {
		t.Errorf("got %q last with his, want three, the newest", got)
	}
}
