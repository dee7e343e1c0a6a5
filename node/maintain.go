package node

import (
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"

	pb "github.com/schat/schat/proto"
)

// pruneEvery is how often the meta shard's leader drops expired sessions.
const pruneEvery = time.Hour

// maintain runs the node's periodic housekeeping until Close.
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	sweep := time.NewTicker(n.cfg.Files.SweepInterval)
	defer sweep.Stop()
	owned := time.NewTicker(n.cfg.Ownership.Interval)
	defer owned.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.pruneSessions(time.Now())
		case <-sweep.C:
			n.sweepFiles()
		case <-owned.C:
			n.reconcileOwnership(time.Now())
		}
	}
}

// sweepFiles has every shard this node leads drop its abandoned uploads
// and unclaimed files, proposing a sweep only where there is something
// to drop. The state machine decides from the command's time.
func (n *Node) sweepFiles() {
	c := &pb.FileSweepCmd{UploadTimeoutMs: n.cfg.Files.UploadTimeout.Milliseconds(),
		UnclaimedMs: n.cfg.Files.UnclaimedTTL.Milliseconds()}
	for _, sh := range n.shards {
		if sh.raft.State() != raft.Leader {
			continue
		}
		var work bool
		err := sh.fsm.View(func(tx *bolt.Tx) (err error) {
			work, err = fsm.FileWork(tx, time.Now().UnixMilli(), c)
			return err
		})
		if err == nil && work {
			_, err = n.exec(n.ctx, nil, sh.id, &pb.Command{Op: &pb.Command_FileSweep{FileSweep: c}})
		}
		if err != nil {
			n.log.Warn("sweep files", "shard", sh.id, "err", err)
		}
	}
}

// pruneSessions removes the sessions expired by now. Only the meta
// leader proposes it, and only when its state holds an expired session,
// so an idle deployment's meta shard stays where it is; the state machine
// decides from the command's time, which is now, what expired.
func (n *Node) pruneSessions(now time.Time) {
	sh := n.shards[metaShard]
	if sh.raft.State() != raft.Leader {
		return
	}
	var expired bool
	err := sh.fsm.View(func(tx *bolt.Tx) (err error) {
		expired, err = fsm.SessionsExpired(tx, now.UnixMilli())
		return err
	})
	if err == nil && expired {
		_, err = n.exec(n.ctx, nil, metaShard, &pb.Command{TimeMs: now.UnixMilli(),
			Op: &pb.Command_PruneSessions{PruneSessions: &pb.PruneSessionsCmd{}}})
	}
	if err != nil {
		n.log.Warn("prune sessions", "err", err)
	}
}
