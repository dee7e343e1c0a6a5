package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/storage"
)

// RestoreConfig configures Restore.
type RestoreConfig struct {
	// From is the backup file.
	From string
	// DataDir is the data directory to create; it must not exist or be
	// empty.
	DataDir string
	// NodeID names the restored node; defaults to "node1".
	NodeID string
	// RaftAddr is the node-to-node address other nodes will dial: the
	// --raft-advertise (or --raft-addr) the node is started with. Defaults
	// to DefaultConfig's.
	RaftAddr string
	// Progress, if set, is called as the file is read, with the bytes
	// read so far and the total (the file is read twice: checked whole
	// first, then restored).
	Progress func(done, total int64)
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
}

// RestoreResult is what a restore made.
type RestoreResult struct {
	// Manifest is the backup's.
	Manifest *storage.Manifest
	// ClusterID is the new cluster's, unlike the backup's.
	ClusterID string
	// Secret is the new cluster secret; show it to the operator once.
	Secret []byte
	// Incarnation is the new incarnation clients will see.
	Incarnation uint64
}

// ErrTargetNotEmpty means a restore was asked to write into a data
// directory that already holds something.
var ErrTargetNotEmpty = errors.New("node: the target data directory is not empty")

// Restore makes a new data directory from a backup file: a one-node
// cluster with a new cluster ID, secret and incarnation, holding every
// shard's state at the backup's indexes. Other nodes can then join it.
//
// The file is checked whole before anything is written. The directory is
// built next to DataDir under a temporary name and renamed into place at
// the end, so a failed restore leaves nothing behind.
func Restore(cfg RestoreConfig) (*RestoreResult, error) {
	cfg = cfg.withDefaults()
	if err := checkEmptyTarget(cfg.DataDir); err != nil {
		return nil, err
	}
	f, err := os.Open(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	prog := &progressReader{r: f, total: 2 * st.Size(), fn: cfg.Progress}
	m, err := storage.VerifyBackup(prog)
	if err != nil {
		return nil, fmt.Errorf("node: restore %s: %w", cfg.From, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	prog.r = f
	return restoreInto(cfg, m, prog)
}

func (c RestoreConfig) withDefaults() RestoreConfig {
	d := DefaultConfig()
	setStr(&c.NodeID, d.NodeID)
	setStr(&c.RaftAddr, d.RaftAddr)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// checkEmptyTarget refuses a target that exists and is not an empty
// directory.
func checkEmptyTarget(dir string) error {
	if dir == "" {
		return errors.New("node: restore needs a data directory")
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: restore target: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: %s", ErrTargetNotEmpty, dir)
	}
	return nil
}

// restoreInto builds the data directory in a temporary directory beside
// the target from the backup read from r, then renames it into place.
func restoreInto(cfg RestoreConfig, m *storage.Manifest, r io.Reader) (*RestoreResult, error) {
	parent, base := filepath.Split(filepath.Clean(cfg.DataDir))
	if parent == "" {
		parent = "."
	}
	made, err := mkdirAll(parent)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".restore-")
	if err == nil {
		var res *RestoreResult
		if res, err = buildDataDir(cfg, m, r, tmp); err == nil {
			err = moveIntoPlace(tmp, cfg.DataDir)
		}
		if err == nil {
			return res, nil
		}
		os.RemoveAll(tmp)
	}
	removeMade(made)
	return nil, err
}

// mkdirAll makes dir and any missing parents, and returns the ones it
// made, deepest first.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], 0o700)
		switch {
		case err == nil:
			made = append([]string{missing[i]}, made...)
		case !errors.Is(err, os.ErrExist): // made by another meanwhile: not ours
			removeMade(made)
			return nil, err
		}
	}
	return made, nil
}

// removeMade removes the directories mkdirAll made, deepest first; one
// that something else has written into meanwhile stays.
func removeMade(made []string) {
	for _, d := range made {
		os.Remove(d)
	}
}

// buildDataDir restores every shard into dir and writes the directory's
// info and new secret.
func buildDataDir(cfg RestoreConfig, m *storage.Manifest, r io.Reader,
	dir string) (*RestoreResult, error) {
	res := &RestoreResult{Manifest: m}
	var err error
	if res.Incarnation, err = newIncarnation(); err != nil {
		return nil, err
	}
	if err := restoreShards(cfg, m, r, dir, res.Incarnation); err != nil {
		return nil, err
	}
	if res.ClusterID, err = newClusterID(); err != nil {
		return nil, err
	}
	if res.Secret, err = newSecret(); err != nil {
		return nil, err
	}
	info := dirInfo{Shards: m.Shards, ClusterID: res.ClusterID, NodeID: cfg.NodeID}
	return res, createDataDir(dir, info, res.Secret)
}

// restoreShards reads the backup again and restores each part into its
// shard's directory, checking that it is the part the manifest named.
func restoreShards(cfg RestoreConfig, m *storage.Manifest, r io.Reader, dir string,
	incarnation uint64) error {
	br, err := storage.NewBackupReader(r)
	if err != nil {
		return err
	}
	self := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID),
		Address: raft.ServerAddress(cfg.RaftAddr)}
	for {
		p, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if int(p.Shard) >= len(m.Parts) {
			return fmt.Errorf("%w: the file changed while it was read", storage.ErrBackupCorrupt)
		}
		err = restoreShard(shardDir(dir, p.Shard), p, m.Parts[p.Shard], self, incarnation,
			cfg.Logger)
		if err != nil {
			return fmt.Errorf("restore shard %s: %w", shardLabel(p.Shard), err)
		}
	}
	if m2 := br.Manifest(); m2 == nil || len(m2.Parts) != len(m.Parts) {
		return fmt.Errorf("%w: the file changed while it was read", storage.ErrBackupCorrupt)
	}
	return nil
}

// restoreShard makes one shard's directory: its state from the part, and
// a raft snapshot of that state at the part's index and term whose
// configuration is self alone, with an empty log. raft starts from the
// snapshot; the state machine skips restoring it, since its state already
// holds that index.
func restoreShard(dir string, p *storage.Part, want storage.PartInfo, self raft.Server,
	incarnation uint64, logger *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := fsm.Open(shardFSMConfig(dir, p.Shard, logger))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Restore(io.NopCloser(p)); err != nil {
		return err
	}
	// Read to the part's end, where its checksum is checked.
	if _, err := io.Copy(io.Discard, p); err != nil {
		return err
	}
	var index, term uint64
	f.View(func(tx *bolt.Tx) error {
		index, term = storage.Applied(tx)
		return nil
	})
	if index != want.Index || term != want.Term {
		return fmt.Errorf("%w: state at %d/%d, manifest says %d/%d", storage.ErrBackupCorrupt,
			index, term, want.Index, want.Term)
	}
	if err := f.MarkRestored(incarnation); err != nil {
		return err
	}
	return writeRaftStart(dir, f, index, term, self, logger)
}

// shardFSMConfig is the state machine configuration of the shard kept in
// dir, for opening it outside a running node.
func shardFSMConfig(dir string, id uint32, logger *slog.Logger) fsm.Config {
	return fsm.Config{Path: filepath.Join(dir, "state.db"), Kind: shardKind(id), Shard: id,
		Logger: logger}
}

// raftKeyCurrentTerm is the stable store key under which raft keeps its
// current term. A restored shard's term must not be below the term of
// its snapshot, or the node would lead in a term older than its log.
var raftKeyCurrentTerm = []byte("CurrentTerm")

// writeRaftStart writes a raft snapshot of f's state into the shard's
// snapshot store and sets its stable store's term.
func writeRaftStart(dir string, f *fsm.FSM, index, term uint64, self raft.Server,
	logger *slog.Logger) error {
	logs, err := OpenRaftLog(filepath.Join(dir, "raft.db"))
	if err != nil {
		return err
	}
	defer logs.Close()
	if err := logs.SetUint64(raftKeyCurrentTerm, term); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2,
		newHCLog(logger, "raft"))
	if err != nil {
		return err
	}
	_, trans := raft.NewInmemTransport(self.Address)
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term,
		raft.Configuration{Servers: []raft.Server{self}}, index, trans)
	if err != nil {
		return err
	}
	snap, err := f.Snapshot()
	if err != nil {
		sink.Cancel()
		return err
	}
	defer snap.Release()
	return snap.Persist(sink)
}

// moveIntoPlace renames the built directory tmp to dir, which may exist
// as an empty directory.
func moveIntoPlace(tmp, dir string) error {
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %v", ErrTargetNotEmpty, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// newIncarnation returns a random non-zero incarnation.
func newIncarnation() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v, nil
		}
	}
}

// incarnation returns the incarnation recorded in this node's meta shard
// and the one it was restored from.
func (n *Node) incarnation() (cur, prev uint64) {
	n.shards[metaShard].fsm.View(func(tx *bolt.Tx) error {
		cur, prev = fsm.Incarnation(tx), fsm.PreviousIncarnation(tx)
		return nil
	})
	return cur, prev
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
	return n, err
}
