package main

import (
	"fmt"
	"strings"
	"testing"
)

// The server limits the requests that cost a password hash (register,
// login, apply, passwd, join passwords) per client address to a burst of
// 11 at its default --rate-per-minute of 30; the tests below make more, so
// they raise the rate.

// TestChat_V1Demo replays the command-line demo of v1's README with two
// users, each a series of short scripts that log in again every time.
func TestChat_V1Demo(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{extra: []string{"--rate-per-minute", "600"}})
	addr := srv.clientAddr

	// protoss registers and creates sc2 with join password 123.
	r := script(t, addr, `
		reg protoss 123 zelot 1 shenzhen
		login protoss 123
		create sc2 123 the sc2 group
	`)
	wantResult(t, r.results[0], "reg", codeOK)
	if r.results[0].num("uid") == 0 || r.results[0].str("name") != "protoss" {
		t.Fatalf("got reg result %v, want name protoss and a uid", r.results[0])
	}
	wantResult(t, r.results[1], "login", codeOK)
	if got := r.results[1].str("display_name"); got != "zelot" {
		t.Errorf("got display name %q, want zelot", got)
	}
	created := r.results[2]
	wantResult(t, created, "create", codeOK)
	gid := created.num("grp_id")
	if gid == 0 || created.str("grp_name") != "sc2" || created["has_password"] != true ||
		created.num("mem_count") != 1 {
		t.Fatalf("got create result %v, want sc2 with a password and one member", created)
	}

	// zerg registers and applies, first with a wrong password.
	r = script(t, addr, fmt.Sprintf(`
		reg zerg 123 zergling 1 chengdu
		login zerg 123
		apply %d 456 let me in
		apply %[1]d 123 let me in
	`, gid))
	zerg := r.results[0].num("uid")
	wantResult(t, r.results[2], "apply", "WRONG_PASSWORD")
	if r.results[2].str("detail") == "" {
		t.Errorf("got no detail with WRONG_PASSWORD")
	}
	wantResult(t, r.results[3], "apply", codeOK)
	if got := r.results[3].str("grp_name"); got != "sc2" {
		t.Errorf("got applied group %q, want sc2", got)
	}

	// protoss finds the application at login and approves it with v1's
	// four-argument audit.
	r = script(t, addr, fmt.Sprintf(`
		login protoss 123
		audit %d sc2 %d 1
		apps %[1]d
		grp_info %[1]d
	`, gid, zerg))
	apps := r.results[0].list("applications")
	if len(apps) != 1 || apps[0].num("uid") != zerg || apps[0].str("msg") != "let me in" {
		t.Fatalf("got applications %v at login, want zerg's", apps)
	}
	wantResult(t, r.results[1], "audit", codeOK)
	if got := r.results[1].num("mem_count"); got != 2 {
		t.Errorf("got %d members after approval, want 2", got)
	}
	if got := r.results[2].num("count"); got != 0 {
		t.Errorf("got %d pending applications after approval, want 0", got)
	}
	if got := len(r.results[3].list("members")); got != 2 {
		t.Errorf("got %d members listed, want 2", got)
	}

	// zerg learns the decision at login and says hello twice.
	r = script(t, addr, fmt.Sprintf(`
		login zerg 123
		chat 0 %d hello
		chat 0 %[1]d hello
	`, gid))
	notices := r.results[0].list("notices")
	if len(notices) != 1 || notices[0].str("event") != "decided" ||
		notices[0]["approved"] != true || notices[0].num("grp_id") != gid {
		t.Fatalf("got notices %v at login, want the approval", notices)
	}
	hello := r.results[1].num("seq")
	wantResult(t, r.results[2], "chat", codeOK)
	if hello == 0 || r.results[2].num("seq") != hello+1 {
		t.Fatalf("got seqs %d and %d, want consecutive", hello, r.results[2].num("seq"))
	}

	// protoss sees them in the history, reads up and logs out.
	r = script(t, addr, fmt.Sprintf(`
		login protoss 123
		his %d
		sync %[1]d
		logout
	`, gid))
	msgs := r.results[1].list("messages")
	wantTexts(t, msgs[len(msgs)-2:], "hello", "hello")
	if msgs[0].str("type") != "system" || msgs[len(msgs)-1].num("sender") != zerg {
		t.Errorf("got history %v, want the creation first and zerg last", msgs)
	}
	if got := r.results[2].num("unread"); got != 0 {
		t.Errorf("got %d unread after sync, want 0", got)
	}
	wantResult(t, r.results[3], "logout", codeOK)

	// zerg sends three messages while protoss is away; the approval
	// notice was acknowledged, so it does not come again.
	r = script(t, addr, fmt.Sprintf(`
		login zerg 123
		chat 0 %d no.1message
		chat 0 %[1]d no.2message
		chat 0 %[1]d no.3message
	`, gid))
	if n := r.results[0].list("notices"); len(n) != 0 {
		t.Errorf("got notices %v at the second login, want none", n)
	}

	// protoss comes back to three unread messages, syncs them and, as the
	// owner, recalls the last.
	r = script(t, addr, fmt.Sprintf(`
		login protoss 123
		sync %d
		recall %[1]d %d
		his %[1]d 0 1
		recall %[1]d %[2]d
	`, gid, hello+4))
	groups := r.results[0].list("groups")
	if len(groups) != 1 || groups[0].num("grp_id") != gid || groups[0].num("unread") != 3 {
		t.Fatalf("got groups %v at login, want sc2 with 3 unread", groups)
	}
	synced := r.results[1].list("messages")
	wantTexts(t, synced, "no.1message", "no.2message", "no.3message")
	if synced[0].num("seq") != hello+2 || synced[2].num("seq") != hello+4 {
		t.Errorf("got seqs %d..%d, want %d..%d", synced[0].num("seq"), synced[2].num("seq"),
			hello+2, hello+4)
	}
	wantResult(t, r.results[2], "recall", codeOK)
	if m := r.results[3].list("messages"); len(m) != 1 || m[0]["recalled"] != true ||
		m[0].str("text") != "" {
		t.Errorf("got %v, want the last message recalled and blank", m)
	}
	wantResult(t, r.results[4], "recall", "ALREADY_DONE")
}

// TestChat_GroupLifecycle takes a group through the owner's operations:
// attributes, kick, a second application, transfer, quit and dissolve.
func TestChat_GroupLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{extra: []string{"--rate-per-minute", "600"}})
	addr := srv.clientAddr

	// protoss creates a password-less group and makes it public.
	r := script(t, addr, `
		reg protoss 123 zelot 1 shenzhen
		login protoss 123
		create club - for everyone
		g_ground
	`)
	gid := r.results[2].num("grp_id")
	if r.results[2]["has_password"] != false || r.results[2].str("desc") != "for everyone" {
		t.Fatalf("got create result %v, want no password and the description", r.results[2])
	}
	r = script(t, addr, fmt.Sprintf(`
		login protoss 123
		g_attr %d 0
		g_attr %[1]d 3 sc2
		g_attr %[1]d 4 http://example.com/a.png
		g_ground
		passwd 123 1234
		profile location aiur
		u_prof
	`, gid))
	if r.results[1]["public"] != true || r.results[2].str("grp_name") != "sc2" {
		t.Errorf("got %v and %v, want a public group named sc2", r.results[1], r.results[2])
	}
	wantResult(t, r.results[3], "g_attr", codeFile) // a URL is no local image
	ground := r.results[4].list("groups")
	if len(ground) != 1 || ground[0].num("grp_id") != gid {
		t.Errorf("got public groups %v, want sc2", ground)
	}
	wantResult(t, r.results[5], "passwd", codeOK)
	if p := r.results[7].list("profiles"); len(p) != 1 || p[0].str("location") != "aiur" {
		t.Errorf("got profiles %v, want protoss in aiur", p)
	}

	// zerg applies without a password; protoss approves, then kicks.
	r = script(t, addr, fmt.Sprintf(`
		reg zerg 123 zergling 1 chengdu
		login zerg 123
		apply %d - hi
	`, gid))
	zerg := r.results[0].num("uid")
	r = script(t, addr, fmt.Sprintf(`
		login protoss 1234
		audit %d %d 1
		kick %[1]d %[2]d
		grp_info %[1]d
	`, gid, zerg))
	wantResult(t, r.results[2], "kick", codeOK)
	if got := r.results[3].num("mem_count"); got != 1 {
		t.Errorf("got %d members after the kick, want 1", got)
	}

	// zerg learns both at login, cannot chat, and applies again.
	r = script(t, addr, fmt.Sprintf(`
		login zerg 123
		chat 0 %d still here?
		apply %[1]d - sorry
	`, gid))
	var kinds []string
	for _, n := range r.results[0].list("notices") {
		kinds = append(kinds, n.str("event")+":"+n.str("change"))
	}
	if strings.Join(kinds, " ") != "decided: member:kicked" {
		t.Errorf("got notices %q, want the approval then the kick", kinds)
	}
	wantResult(t, r.results[1], "chat", "NOT_MEMBER")
	wantResult(t, r.results[2], "apply", codeOK)

	// protoss approves with the three-argument audit, hands the group to
	// zerg and leaves; zerg dissolves it.
	r = script(t, addr, fmt.Sprintf(`
		login protoss 1234
		quit %d
		audit %[1]d %d 1
		transfer %[1]d %[2]d
		quit %[1]d
		groups
	`, gid, zerg))
	wantResult(t, r.results[1], "quit", "OWNER_MUST_TRANSFER")
	wantResult(t, r.results[3], "transfer", codeOK)
	wantResult(t, r.results[4], "quit", codeOK)
	if got := r.results[5].num("count"); got != 0 {
		t.Errorf("got %d groups after quitting, want 0", got)
	}
	r = script(t, addr, fmt.Sprintf(`
		login zerg 123
		dissolve %d
		groups
		grp_info %[1]d
	`, gid))
	if g := r.results[0].list("groups"); len(g) != 1 || g[0].str("role") != "owner" {
		t.Errorf("got groups %v, want sc2 owned by zerg", g)
	}
	wantResult(t, r.results[1], "dissolve", codeOK)
	if got := r.results[2].num("count"); got != 0 {
		t.Errorf("got %d groups after dissolving, want 0", got)
	}
	wantResult(t, r.results[3], "grp_info", "NOT_FOUND")
}

func wantTexts(t testing.TB, msgs []line, want ...string) {
	t.Helper()
	var got []string
	for _, m := range msgs {
		got = append(got, m.str("text"))
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got texts %q, want %q", got, want)
	}
}
