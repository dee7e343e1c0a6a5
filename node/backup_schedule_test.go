package node

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// scheduledBackups reads every backup file in dir, oldest first.
func scheduledBackups(t testing.TB, dir string) []*storage.Manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, backupFilePrefix+"*"+backupFileSuffix))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*storage.Manifest, len(files))
	for i, f := range files {
		out[i] = verifyFile(t, f)
	}
	return out
}

// wantOneTaker fails unless every backup in ms was taken on node id and
// no two of them hold the same state.
func wantOneTaker(t testing.TB, ms []*storage.Manifest, id string) {
	t.Helper()
	var seen [][]uint64
	for _, m := range ms {
		idx := make([]uint64, len(m.Parts))
		for i, p := range m.Parts {
			idx[i] = p.Index
		}
		if m.Source != id {
			t.Fatalf("a backup was taken on %s, want every one on %s", m.Source, id)
		}
		if slices.ContainsFunc(seen, func(o []uint64) bool { return slices.Equal(o, idx) }) {
			t.Fatalf("two backups of the same state at %v", idx)
		}
		seen = append(seen, idx)
	}
}

// TestBackup_ScheduledOnOneNode runs scheduled backups on a three-node
// cluster whose nodes share one backup directory, as with a shared mount.
// Each backup is taken by one node only, the meta shard's leader, and
// none twice of the same state; when that node dies, another takes over.
func TestBackup_ScheduledOnOneNode(t *testing.T) {
	dir := t.TempDir()
	c := newClusterWith(t, 3, func(cfg *Config) {
		cfg.Backup = BackupSchedule{Dir: dir, Interval: 40 * time.Millisecond, Keep: 1000}
	})
	first := c.leader(metaShard)
	term := c.nodes[first].shards[metaShard].raft.Stats()["term"]
	via := (first + 1) % 3
	owner, _ := user(t, c.nodes[via].ClientAddr(), false, "owner")
	go drain(owner)
	waitGroups := func(n uint64) {
		t.Helper()
		c.waitFor(fmt.Sprintf("a backup holding %d groups", n), func() bool {
			ms := scheduledBackups(t, dir)
			return len(ms) > 0 && ms[len(ms)-1].Counts.Groups == n
		})
	}
	for i := range uint64(3) {
		must(owner.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "g"}))(t)
		waitGroups(i + 1)
	}
	if now := c.nodes[first].shards[metaShard].raft.Stats()["term"]; now != term {
		t.Fatalf("the meta shard changed leader meanwhile (term %s, then %s)", term, now)
	}
	before := scheduledBackups(t, dir)
	wantOneTaker(t, before, c.cfgs[first].NodeID)

	c.stop(first)
	second := c.leader(metaShard)
	must(owner.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "g"}))(t)
	waitGroups(4)
	after := scheduledBackups(t, dir)[len(before):]
	wantOneTaker(t, after, c.cfgs[second].NodeID)
}
