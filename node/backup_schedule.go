package node

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/storage"
)

// BackupSchedule configures automatic backups. Every node runs the
// schedule, but only the leader of the meta shard takes a backup, into
// its own Dir; it skips one when no shard applied anything since the last
// backup it took (so the first interval after a start or a change of
// leader always takes one).
type BackupSchedule struct {
	// Dir receives the backup files; empty turns scheduled backups off.
	Dir string
	// Interval between two attempts; default one hour.
	Interval time.Duration
	// Keep is how many backup files to keep in Dir; default 7.
	Keep int
}

const (
	backupFilePrefix = "schat-"
	backupFileSuffix = ".backup"
	backupTimeLayout = "20060102T150405.000Z"
)

func (b BackupSchedule) withDefaults() BackupSchedule {
	if b.Interval == 0 {
		b.Interval = time.Hour
	}
	if b.Keep == 0 {
		b.Keep = 7
	}
	return b
}

func (b BackupSchedule) validate() error {
	if b.Dir == "" {
		return nil
	}
	if b.Interval < 0 || b.Keep < 1 {
		return errors.New("node: backups need a positive interval and keep at least 1")
	}
	return nil
}

// scheduleBackups runs the backup schedule until Close.
func (n *Node) scheduleBackups() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Backup.Interval)
	defer t.Stop()
	var last []uint64
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			var err error
			if last, err = n.scheduledBackup(last); err != nil && n.ctx.Err() == nil {
				n.log.Error("scheduled backup failed", "err", err)
			}
		}
	}
}

// scheduledBackup takes a backup into the backup directory if this node
// leads the meta shard and the shards' applied indexes differ from last,
// those of the previous backup. It returns the indexes of the newest
// backup.
func (n *Node) scheduledBackup(last []uint64) ([]uint64, error) {
	if n.shards[metaShard].raft.State() != raft.Leader {
		return last, nil
	}
	exports, err := n.exportAll(n.ctx)
	if err != nil {
		return last, err
	}
	defer releaseAll(exports)
	idx := exportIndexes(exports)
	if slices.Equal(idx, last) {
		n.log.Debug("backup skipped: nothing changed", "index", idx[0])
		return last, nil
	}
	path, err := n.writeBackupFile(exports)
	if err != nil {
		return last, err
	}
	n.log.Info("scheduled backup written", "path", path, "index", idx[0])
	return idx, n.pruneBackups()
}

func exportIndexes(exports []*fsm.Export) []uint64 {
	out := make([]uint64, len(exports))
	for i, e := range exports {
		out[i] = e.Index
	}
	return out
}

// writeBackupFile writes the exports to a new file in the backup
// directory through a synced temporary file.
func (n *Node) writeBackupFile(exports []*fsm.Export) (string, error) {
	dir := n.cfg.Backup.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := backupFilePrefix + time.Now().UTC().Format(backupTimeLayout) + backupFileSuffix
	path := filepath.Join(dir, name)
	f, err := storage.CreatePending(path)
	if err != nil {
		return "", err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := writeBackup(bw, n.manifestBase(), exports); err != nil {
		return "", err
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	return path, f.Commit()
}

// pruneBackups removes the oldest backup files beyond Keep.
func (n *Node) pruneBackups() error {
	ents, err := os.ReadDir(n.cfg.Backup.Dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, backupFilePrefix) && strings.HasSuffix(name, backupFileSuffix) {
			names = append(names, name)
		}
	}
	sort.Strings(names) // the time in the name sorts oldest first
	var errs []error
	for len(names) > n.cfg.Backup.Keep {
		if err := os.Remove(filepath.Join(n.cfg.Backup.Dir, names[0])); err != nil {
			errs = append(errs, fmt.Errorf("prune backups: %w", err))
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
