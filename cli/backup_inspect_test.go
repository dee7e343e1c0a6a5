package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/schat/schat/storage"
	"github.com/schat/schat/storage/storagetest"
)

// TestSnapshotInspect_Damaged runs `schat snapshot inspect` on files that
// must not be restored: each exits with status 1 (not a crash), says on
// standard output which way the file is unusable, and says not to
// restore from it.
func TestSnapshotInspect_Damaged(t *testing.T) {
	t.Parallel()
	good := storagetest.OpaqueBackup(t, 300<<10, // 2 chunks a part
		storage.Manifest{SchatVersion: "test", ClusterID: "c1",
			Counts: storage.Counts{Users: 3, Groups: 2, Messages: 5}})
	version := slices.Clone(good)
	binary.BigEndian.PutUint32(version[8:], storage.BackupFormat+1)
	flipped := slices.Clone(good)
	flipped[len(good)/2] ^= 0x01

	for _, tc := range []struct {
		name   string
		data   []byte
		status string // the status line's start
	}{
		{"whole", good, "status    whole: all 2 parts"},
		{"bad magic", append([]byte("NOTABACK"), good[8:]...), "status    NOT A BACKUP"},
		{"empty", nil, "status    NOT WHOLE: storage: backup file is truncated"},
		{"unknown version", version, "status    UNKNOWN FORMAT"},
		{"truncated", good[:len(good)*2/3],
			"status    NOT WHOLE: storage: backup file is truncated"},
		{"truncated before the end checksum", good[:len(good)-1], "status    NOT WHOLE"},
		{"flipped byte", flipped, "status    NOT WHOLE: storage: backup file is corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "file.backup")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runSchat(t, "snapshot", "inspect", path)
			if !strings.Contains(out, "\n"+tc.status) {
				t.Fatalf("got output\n%s\nwant a line starting %q", out, tc.status)
			}
			if tc.data == nil || !bytes.Equal(tc.data, good) {
				wantRefusal(t, err)
			} else if err != nil {
				t.Fatalf("inspect of a whole file: %v", err)
			}
		})
	}
}

// wantRefusal fails unless err is an exit with status 1 whose message
// tells the operator not to restore.
func wantRefusal(t testing.TB, err error) {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case !errors.As(err, &exit) || exit.ExitCode() != 1:
		t.Fatalf("got %v, want exit status 1", err)
	case strings.Contains(err.Error(), "panic"):
		t.Fatalf("inspect crashed: %v", err)
	case !strings.Contains(err.Error(), "do not restore from it"):
		t.Fatalf("got %v, want a plain refusal", err)
	}
}
