package node

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/schat/schat/fsm"
)

// Recover rewrites the membership of every shard in a stopped node's data
// directory to servers, the way raft's peers.json recovery does. It is for
// a cluster that lost its quorum for good: run it on each surviving node
// with the same servers (often just the one survivor), then start them.
// The node's own state is kept; entries its log holds beyond the last
// snapshot are applied first.
func Recover(dataDir string, servers []raft.Server, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	info, ok, err := readDataDir(dataDir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("node: %s holds no schat data", dataDir)
	}
	for id := uint32(0); id <= uint32(info.Shards); id++ {
		if err := recoverShard(dataDir, info.NodeID, id, servers, logger); err != nil {
			return fmt.Errorf("recover shard %s: %w", shardLabel(id), err)
		}
	}
	return nil
}

func recoverShard(dataDir, nodeID string, id uint32, servers []raft.Server,
	logger *slog.Logger) error {
	dir := shardDir(dataDir, id)
	kind := fsm.KindGroup
	if id == 0 {
		kind = fsm.KindMeta
	}
	f, err := fsm.Open(fsm.Config{Path: filepath.Join(dir, "state.db"), Kind: kind, Shard: id,
		Logger: logger})
	if err != nil {
		return err
	}
	defer f.Close()
	logs, err := OpenRaftLog(filepath.Join(dir, "raft.db"))
	if err != nil {
		return err
	}
	defer logs.Close()
	hlog := newHCLog(logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, hlog)
	if err != nil {
		return err
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(nodeID))
	rc := RaftConfig(nodeID, DefaultConfig().Raft, hlog)
	return raft.RecoverCluster(rc, f, logs, logs, snaps, trans,
		raft.Configuration{Servers: servers})
}
