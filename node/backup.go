package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/storage"
)

// A backup is one file holding every shard's state (see storage's backup
// format). On a running node each shard's part is its state at one applied
// index, read on this node after a linearizable barrier, so the part holds
// every write acknowledged before the backup began; the manifest records
// that index. Shards are separate raft groups, so their indexes are
// independent: the operations that touch two shards can be caught between
// their two steps, as a crash can catch them.

// BackupEstimateHeader carries, on /cluster/backup, the size of the file
// to come but for its manifest: the shards' states, file contents and
// partial uploads, framed.
const BackupEstimateHeader = "X-Schat-Backup-Estimate"

// Backup writes a backup of the whole deployment to w. estimate, if not
// nil, is told the approximate size before the first byte is written.
func (n *Node) Backup(ctx context.Context, w io.Writer,
	estimate func(int64)) (*storage.Manifest, error) {
	exports, err := n.exportAll(ctx)
	if err != nil {
		return nil, err
	}
	defer releaseAll(exports)
	if estimate != nil {
		estimate(exportSize(exports))
	}
	return writeBackup(w, n.manifestBase(), exports)
}

// exportAll opens a view of every shard, each after a barrier.
func (n *Node) exportAll(ctx context.Context) ([]*fsm.Export, error) {
	if !n.hasState() {
		return nil, errClosed
	}
	var out []*fsm.Export
	for _, sh := range n.shards {
		if err := n.barrier(ctx, sh.id); err != nil {
			releaseAll(out)
			return nil, fmt.Errorf("backup: shard %s: %w", shardLabel(sh.id), err)
		}
		e, err := sh.fsm.Export()
		if err != nil {
			releaseAll(out)
			return nil, fmt.Errorf("backup: shard %s: %w", shardLabel(sh.id), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (n *Node) manifestBase() storage.Manifest {
	return storage.Manifest{SchatVersion: n.cfg.Version, ClusterID: n.info.ClusterID,
		Shards: n.info.Shards, Source: n.cfg.NodeID}
}

func releaseAll(exports []*fsm.Export) {
	for _, e := range exports {
		e.Release()
	}
}

func exportSize(exports []*fsm.Export) int64 {
	sizes := make([]int64, len(exports))
	for i, e := range exports {
		sizes[i] = e.Size
	}
	return storage.BackupSize(sizes)
}

// writeBackup writes the exports as the parts of a backup file, then the
// manifest built on base.
func writeBackup(w io.Writer, base storage.Manifest,
	exports []*fsm.Export) (*storage.Manifest, error) {
	bw, err := storage.NewBackupWriter(w)
	if err != nil {
		return nil, err
	}
	m := base
	m.Created = time.Now().UTC()
	for i, e := range exports {
		if _, err := bw.WritePart(uint32(i), e.Index, e.Term, e.Write); err != nil {
			return nil, err
		}
		m.Counts.Add(e.Counts)
	}
	if err := bw.Finish(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// serveBackup streams a backup as the response. An error after the first
// byte aborts the connection, so that the client sees a truncated file
// rather than a short one that looks whole.
func (n *Node) serveBackup(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	exports, err := n.exportAll(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer releaseAll(exports)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(BackupEstimateHeader, strconv.FormatInt(exportSize(exports), 10))
	start := time.Now()
	m, err := writeBackup(w, n.manifestBase(), exports)
	if err != nil {
		n.log.Warn("backup failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	n.log.Info("backup served", "index", m.Parts[0].Index, "messages", m.Counts.Messages,
		"duration", time.Since(start).Round(time.Millisecond))
}

// BackupDirConfig configures BackupDir.
type BackupDirConfig struct {
	// DataDir is a stopped node's data directory.
	DataDir string
	// Version is the schat version recorded in the manifest.
	Version string
	// Estimate, if set, is told the approximate size before writing.
	Estimate func(int64)
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
}

// ErrNodeRunning means a data directory's state is locked by a running
// node.
var ErrNodeRunning = errors.New("node: the data directory is in use; stop its node first")

// BackupDir writes to w a backup of a stopped node's data directory: each
// shard's state as this node last applied it.
func BackupDir(cfg BackupDirConfig, w io.Writer) (*storage.Manifest, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	info, ok, err := readDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("node: %s holds no schat data", cfg.DataDir)
	}
	exports, closeAll, err := exportStopped(cfg.DataDir, info.Shards, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	if cfg.Estimate != nil {
		cfg.Estimate(exportSize(exports))
	}
	return writeBackup(w, storage.Manifest{SchatVersion: cfg.Version, ClusterID: info.ClusterID,
		Shards: info.Shards, Source: info.NodeID}, exports)
}

// exportStopped opens a view of every shard of a stopped node; closeAll
// releases the views and closes the states.
func exportStopped(dataDir string, shards int,
	logger *slog.Logger) (exports []*fsm.Export, closeAll func(), err error) {
	var states []*fsm.FSM
	closeAll = func() {
		releaseAll(exports)
		for _, f := range states {
			f.Close()
		}
	}
	for id := uint32(0); id <= uint32(shards); id++ {
		f, err := openStoppedShard(dataDir, id, logger)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		states = append(states, f)
		e, err := f.Export()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		exports = append(exports, e)
	}
	return exports, closeAll, nil
}

// openStoppedShard opens the state of shard id in a stopped node's data
// directory, refusing one that is missing or in use.
func openStoppedShard(dataDir string, id uint32, logger *slog.Logger) (*fsm.FSM, error) {
	path := filepath.Join(shardDir(dataDir, id), "state.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("node: shard %s: %w", shardLabel(id), err)
	}
	f, err := fsm.Open(fsm.Config{Path: path, Kind: shardKind(id), Shard: id, Logger: logger})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrNodeRunning, dataDir)
	}
	return f, err
}

func shardKind(id uint32) fsm.Kind {
	if id == metaShard {
		return fsm.KindMeta
	}
	return fsm.KindGroup
}
