package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChat_NoticesRestore: a connected `schat chat` prints a group's
// messages as they come. Its server is replaced by a restore of an older
// backup, on which two new messages reuse seqs it printed before it
// reconnects. At its next command it resumes, says that the history was
// restored and up to which seq it is the same, and prints the two new
// messages.
func TestChat_NoticesRestore(t *testing.T) {
	t.Parallel()
	clientAddr, raftAddr := freeAddr(t), freeAddr(t)
	srcDir := filepath.Join(t.TempDir(), "src")
	src := startServer(t, serverOptions{dataDir: srcDir, clientAddr: clientAddr})
	r := script(t, clientAddr, "reg ann 123 ann 1 here\nreg ben 123 ben 1 there\n"+
		"login ann 123\ncreate room 123\n")
	ben, gid := r.results[1].num("uid"), r.results[3].num("grp_id")
	script(t, clientAddr, fmt.Sprintf("login ben 123\napply %d 123\n", gid))
	script(t, clientAddr, fmt.Sprintf("login ann 123\naudit %d room %d 1\n", gid, ben))

	c := startChat(t, clientAddr)
	wantResult(t, c.do("login ben 123"), "login", codeOK)
	say := func(texts ...string) uint64 {
		t.Helper()
		var b strings.Builder
		b.WriteString("login ann 123\n")
		for _, text := range texts {
			fmt.Fprintf(&b, "chat 0 %d %s\n", gid, text)
		}
		script(t, clientAddr, b.String())
		last := texts[len(texts)-1]
		return c.waitEvent("message", func(e line) bool { return e.str("text") == last }).num("seq")
	}
	kept := say("kept-0", "kept-1")
	secret, err := os.ReadFile(filepath.Join(srcDir, "cluster.secret"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "room.backup")
	if out, err := runSchat(t, "backup", "--addr", src.httpAddr, "--cluster-secret",
		strings.TrimSpace(string(secret)), "--out", file); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	say("lost-0", "lost-1")
	src.stop(t)
	c.waitEvent("disconnected", nil)

	restored := filepath.Join(t.TempDir(), "restored")
	if out, err := runSchat(t, "restore", "--from", file, "--data-dir", restored,
		"--raft-addr", raftAddr); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	startServer(t, serverOptions{dataDir: restored, clientAddr: clientAddr, raftAddr: raftAddr})
	script(t, clientAddr, fmt.Sprintf("login ann 123\nchat 0 %d new-0\nchat 0 %[1]d new-1\n", gid))

	wantResult(t, c.do("groups"), "groups", codeOK)
	c.waitEvent("reconnected", func(e line) bool { return e["resumed"] == true })
	ev := c.waitEvent("restored", nil)
	if gs := ev.list("groups"); ev["from_known"] != true || len(gs) != 1 ||
		gs[0].num("shared_seq") != kept || gs[0].num("last_seq") != kept+2 {
		t.Fatalf("got restored event %v, want group %d the same up to seq %d, now at %d",
			ev, gid, kept, kept+2)
	}
	for i, text := range []string{"new-0", "new-1"} {
		m := c.waitEvent("message", func(e line) bool { return e.str("text") == text })
		if m.num("seq") != kept+1+uint64(i) {
			t.Fatalf("got %q at seq %d, want seq %d", text, m.num("seq"), kept+1+uint64(i))
		}
	}
	c.finish()
}
