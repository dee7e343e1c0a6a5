package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func pending(t *testing.T, path, text string) *PendingFile {
	t.Helper()
	p, err := CreatePending(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPendingFile_Commit: the file appears whole under its name, a stale
// temporary file of an earlier run does not get in the way, and nothing
// else is left.
func TestPendingFile_Commit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.backup")
	stale := filepath.Join(dir, ".out.backup.tmp")
	if err := os.WriteFile(stale, []byte("killed run"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := pending(t, path, "whole")
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Abort() // after Commit: nothing
	if b, err := os.ReadFile(path); err != nil || string(b) != "whole" {
		t.Fatalf("got %q, %v; want the committed bytes", b, err)
	}
	if got, want := dirNames(t, dir),
		[]string{".out.backup.tmp", "out.backup"}; !slices.Equal(got, want) {
		t.Fatalf("directory holds %v, want %v", got, want)
	}
}

// TestPendingFile_CommitNeverReplaces: a file that appeared under the name
// while the pending one was written stays, the commit fails with
// ErrTargetExists, and the temporary file is gone.
func TestPendingFile_CommitNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.backup")
	p := pending(t, path, "late")
	if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("got %v, want ErrTargetExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Fatalf("got %q under the name, want the file that was there first", b)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"out.backup"}) {
		t.Fatalf("directory holds %v, want only out.backup", got)
	}
}

// TestPendingFile_Abort removes the temporary file and leaves the name
// free.
func TestPendingFile_Abort(t *testing.T) {
	dir := t.TempDir()
	p := pending(t, filepath.Join(dir, "out.backup"), "half")
	p.Abort()
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("directory holds %v after Abort, want nothing", got)
	}
}
