package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/transport"
)

// shard is one raft group: its log, snapshots, state machine and raft.
type shard struct {
	id    uint32
	fsm   *fsm.FSM
	raft  *raft.Raft
	logs  *raftboltdb.BoltStore
	cache *logCache // the log as raft reads it, recent entries from memory
	trans *raft.NetworkTransport
	prop  *proposer
	log   *slog.Logger
	// readyTerm is the latest term in which this node, leading, committed
	// a barrier: from then on its commit index covers every earlier write.
	readyTerm atomic.Uint64
}

// shardConfig is what openShard needs from the node.
type shardConfig struct {
	id           uint32
	dataDir      string
	nodeID       string
	tuning       RaftTuning
	mux          *transport.Mux
	publish      func(events []fsm.Event)
	bootstrap    []raft.Server // the configuration to start a shard with no state
	applyTimeout time.Duration
	forward      forwardFunc
	logger       *slog.Logger
}

// openShard opens (or creates) a shard's files and starts its raft.
func openShard(sc shardConfig) (*shard, error) {
	dir := shardDir(sc.dataDir, sc.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	log := sc.logger.With("shard", sc.id)
	kind := fsm.KindGroup
	if sc.id == 0 {
		kind = fsm.KindMeta
	}
	f, err := fsm.Open(fsm.Config{Path: filepath.Join(dir, "state.db"), Kind: kind,
		Shard: sc.id, Publish: sc.publish, Logger: log})
	if err != nil {
		return nil, err
	}
	s := &shard{id: sc.id, fsm: f, log: log}
	if err := s.startRaft(sc, dir); err != nil {
		s.close()
		return nil, fmt.Errorf("shard %d: %w", sc.id, err)
	}
	return s, nil
}

func (s *shard) startRaft(sc shardConfig, dir string) error {
	logs, err := OpenRaftLog(filepath.Join(dir, "raft.db"))
	if err != nil {
		return err
	}
	s.logs = logs
	cached, err := newLogCache(logs, logCacheSlots, logCacheMaxEntry, logCacheMaxBytes)
	if err != nil {
		return err
	}
	s.cache = cached
	hlog := newHCLog(s.log, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, hlog)
	if err != nil {
		return err
	}
	layer, err := sc.mux.RaftLayer(sc.id)
	if err != nil {
		return err
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog})
	rc := RaftConfig(sc.nodeID, sc.tuning, hlog)
	if len(sc.bootstrap) > 0 {
		if err := bootstrap(rc, cached, logs, snaps, s.trans, sc.bootstrap); err != nil {
			return err
		}
	}
	s.raft, err = raft.NewRaft(rc, s.fsm, cached, logs, snaps, s.trans)
	if err != nil {
		return err
	}
	s.prop = newProposer(s.raft, sc.forward, sc.applyTimeout)
	return nil
}

// RaftConfig is the raft configuration of a shard on node nodeID with
// tuning t; the load generator's ceiling runs its raft with it too.
func RaftConfig(nodeID string, t RaftTuning, hlog hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(nodeID)
	c.Logger = hlog
	c.HeartbeatTimeout = t.HeartbeatTimeout
	c.ElectionTimeout = t.ElectionTimeout
	c.LeaderLeaseTimeout = t.HeartbeatTimeout / 2
	c.CommitTimeout = t.CommitTimeout
	c.MaxAppendEntries = t.MaxAppendEntries
	c.SnapshotThreshold = t.SnapshotThreshold
	c.SnapshotInterval = t.SnapshotInterval
	c.TrailingLogs = t.TrailingLogs
	return c
}

// bootstrap gives a shard with no state its first configuration. Every
// node bootstrapping together passes the same servers.
func bootstrap(rc *raft.Config, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport, servers []raft.Server) error {
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil || has {
		return err
	}
	return raft.BootstrapCluster(rc, logs, stable, snaps, trans,
		raft.Configuration{Servers: servers})
}

// Errors of proposing.
var (
	// errNotLeader means this node does not lead the shard; the command
	// was not appended.
	errNotLeader = errors.New("node: not the shard leader")
	// errSelfLeader means a forward found this node leading the shard:
	// the entry is to be proposed here.
	errSelfLeader = errors.New("node: this node leads the shard")
	// errUnknownOutcome means the command may or may not be committed:
	// leadership was lost after it was appended, or the connection to the
	// leader it was forwarded to broke before the answer came.
	errUnknownOutcome = errors.New("node: outcome unknown")
)

// drainWait bounds each wait for a shard's entries in flight at shutdown.
const drainWait = 5 * time.Second

// shutdownRaft stops p taking proposals, lets r answer the entries p has
// in flight while it still runs, waiting up to wait, and shuts r down.
// raft never answers an entry it has committed but not yet applied when
// it stops, so shutting it down first could leave requests unanswered.
func shutdownRaft(p *proposer, r *raft.Raft, wait time.Duration, log *slog.Logger) error {
	if p == nil {
		return r.Shutdown().Error()
	}
	p.stop()
	p.wait(wait)
	err := r.Shutdown().Error()
	if !p.wait(wait) {
		// The entries are in the log and a restart applies them, but
		// their requests get no answer.
		log.Error("raft entries left unanswered at shutdown")
	}
	return err
}

// close shuts raft down and closes the shard's files.
func (s *shard) close() error {
	var errs []error
	if s.raft != nil {
		errs = append(errs, shutdownRaft(s.prop, s.raft, drainWait, s.log))
	}
	if s.trans != nil {
		errs = append(errs, s.trans.Close())
	}
	if s.logs != nil {
		errs = append(errs, s.logs.Close())
	}
	errs = append(errs, s.fsm.Close())
	return errors.Join(errs...)
}
