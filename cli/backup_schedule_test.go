package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/schat/schat/storage"
)

// backupSources reads every scheduled backup in dir, oldest first, and
// returns the node each was taken on.
func backupSources(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "schat-*.backup"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(files))
	for i, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := storage.VerifyBackup(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[i] = m.Source
	}
	return out
}

// waitSources polls the sources of the backups in dir until ok accepts
// them (there being at least one) and returns them.
func waitSources(t testing.TB, dir string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(sysWait)
	for {
		if got := backupSources(t, dir); len(got) > 0 && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("backups in %s taken on %v after %v", dir, backupSources(t, dir), sysWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServe_ScheduledBackups starts three `schat serve` processes with
// --backup-dir (one directory for all, as with a shared mount),
// --backup-interval and --backup-keep. Backups are taken by one node
// only; when it is killed, another one takes them; and no more than
// --backup-keep files stay.
func TestServe_ScheduledBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pc := newProcCluster(t, 3, "--backup-dir", dir, "--backup-interval", "200ms",
		"--backup-keep", "3")
	r := script(t, pc.nodes[0].clientAddr, "reg ann 123 ann 1 here\nlogin ann 123\ncreate g 123\n")
	wantResult(t, r.results[2], "create", codeOK)
	first := waitSources(t, dir, func([]string) bool { return true })
	taker := first[0]
	for _, s := range first {
		if s != taker {
			t.Fatalf("backups taken on %v: want one node", first)
		}
	}

	var killed, alive *sysNode
	for _, n := range pc.nodes {
		if n.id == taker {
			killed = n
		} else {
			alive = n
		}
	}
	killed.srv.kill(t)
	pc.waitReady(without(pc.nodes, killed)...)
	script(t, alive.clientAddr, "login ann 123\ncreate after-the-kill 123\n")
	got := waitSources(t, dir, func(got []string) bool {
		return len(got) <= 3 && got[len(got)-1] != taker
	})
	next := got[len(got)-1]
	for i, s := range got {
		if s != taker && s != next || s == taker && slices.Contains(got[:i], next) {
			t.Fatalf("backups taken on %v: want %s's, then only %s's", got, taker, next)
		}
	}
}
