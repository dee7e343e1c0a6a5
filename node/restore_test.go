package node

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
	"github.com/schat/schat/storage/storagetest"
)

// TestRestore_RefusesBadInput restores from damaged files and into a
// directory with data: each is refused, and nothing is written beside
// the target.
func TestRestore_RefusesBadInput(t *testing.T) {
	n := startNode(t, testConfig(t))
	populate(t, n.ClientAddr())
	file, _ := httpBackup(t, n)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(good)
	flipped[len(good)/2] ^= 0x01
	version := slices.Clone(good)
	binary.BigEndian.PutUint32(version[8:], storage.BackupFormat+1)

	for _, tc := range []struct {
		name   string
		data   []byte
		target func(t *testing.T, dir string)
		want   error
	}{
		{"flipped byte", flipped, nil, storage.ErrBackupCorrupt},
		{"truncated", good[:len(good)*2/3], nil, storage.ErrBackupTruncated},
		{"wrong format version", version, nil, storage.ErrBackupVersion},
		{"whole file of parts that are not shards",
			storagetest.OpaqueBackup(t, 1500, storage.Manifest{}), nil, storage.ErrSnapshot},
		{"existing data directory", good, func(t *testing.T, dir string) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "schat.json"),
				[]byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrTargetNotEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			from := filepath.Join(parent, "in.backup")
			if err := os.WriteFile(from, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "new", "deeper", "data") // parents made, then removed
			if tc.target != nil {
				tc.target(t, dir)
			}
			before := listDir(t, parent)
			_, err := Restore(RestoreConfig{From: from, DataDir: dir})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := listDir(t, parent); !slices.Equal(after, before) {
				t.Fatalf("restore left %v, had %v", after, before)
			}
		})
	}
}

// listDir lists every path under dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackupDir_MatchesOnline backs a node up while it runs and again
// from its directory once stopped: the two files name the same indexes
// and counts and restore to the same records.
func TestBackupDir_MatchesOnline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shards = 2
	n := startNode(t, cfg)
	populateFiles(t, n, populate(t, n.ClientAddr()))
	online, mOn := httpBackup(t, n)
	n.Close()

	offline := filepath.Join(t.TempDir(), "offline.backup")
	f, err := os.Create(offline)
	if err != nil {
		t.Fatal(err)
	}
	mOff, err := BackupDir(BackupDirConfig{DataDir: cfg.DataDir}, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("BackupDir: %v", err)
	}
	verifyFile(t, offline)
	if mOff.Counts != mOn.Counts || mOff.ClusterID != mOn.ClusterID || len(mOff.Parts) != 3 {
		t.Fatalf("offline manifest %+v, online %+v", mOff, mOn)
	}
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	for i, file := range []string{online, offline} {
		if _, err := Restore(RestoreConfig{From: file, DataDir: dirs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	for s := range mOn.Parts {
		if mOn.Parts[s].Index != mOff.Parts[s].Index {
			t.Fatalf("shard %d: offline index %d, online %d", s, mOff.Parts[s].Index,
				mOn.Parts[s].Index)
		}
		a := logicalDump(t, openRestoredShard(t, dirs[0], uint32(s)))
		b := logicalDump(t, openRestoredShard(t, dirs[1], uint32(s)))
		if a != b {
			t.Fatalf("shard %d: the offline backup restores to other records", s)
		}
	}
}

// TestBackup_Scheduled runs scheduled backups on a node: a first backup
// is written, an attempt with nothing changed is skipped, and only the
// newest Keep files stay.
func TestBackup_Scheduled(t *testing.T) {
	cfg := testConfig(t)
	cfg.Backup = BackupSchedule{Dir: t.TempDir(), Interval: 20 * time.Millisecond, Keep: 2}
	n := startNode(t, cfg)
	waitUntil(t, "a first scheduled backup", func() bool { return len(backups(t, n)) == 1 })
	idx := exportIndexesNow(t, n)
	if got, err := n.scheduledBackup(idx); err != nil || !slices.Equal(got, idx) ||
		len(backups(t, n)) != 1 {
		t.Fatalf("with nothing changed: indexes %v, %v, %d files; want a skip",
			got, err, len(backups(t, n)))
	}

	c, _ := user(t, n.ClientAddr(), false, "ann")
	for i := range 3 {
		g := must(c.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "g"}))(t)
		waitUntil(t, "a backup holding the new group", func() bool {
			files := backups(t, n)
			m := verifyFile(t, files[len(files)-1])
			return m.Counts.Groups == uint64(i+1) && g.GroupId != 0
		})
	}
	// A new file is in place a moment before the oldest is pruned.
	waitUntil(t, "Keep=2 backup files", func() bool { return len(backups(t, n)) == 2 })
	files := backups(t, n)
	if m := verifyFile(t, files[len(files)-1]); m.Counts.Groups != 3 {
		t.Fatalf("newest backup holds %d groups, want 3", m.Counts.Groups)
	}
}

// backups lists n's scheduled backup files, oldest first.
func backups(t testing.TB, n *Node) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(n.cfg.Backup.Dir, "schat-*.backup"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func exportIndexesNow(t testing.TB, n *Node) []uint64 {
	t.Helper()
	exports, err := n.exportAll(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	defer releaseAll(exports)
	return exportIndexes(exports)
}

// TestBackup_Estimate: the size a backup announces before its first byte
// counts the shards' states, the file contents and the uploads they carry:
// it is the file's size but for the manifest, which is written last.
func TestBackup_Estimate(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shards = 2
	n := startNode(t, cfg)
	kept := populateFiles(t, n, populate(t, n.ClientAddr()))
	var filesBytes int
	for _, f := range kept {
		filesBytes += len(f.data)
	}
	var est int64
	var out countingWriter
	m, err := n.Backup(ctxFor(t), &out, func(v int64) { est = v })
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := out.n - int64(len(js)); est != want || est < int64(filesBytes) {
		t.Fatalf("estimate %d, want %d: the %d-byte file without its manifest (files: %d bytes)",
			est, want, out.n, filesBytes)
	}
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
