package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// Proposer batches commands into raft entries exactly as each shard of a
// node does, for a raft that runs outside a node: the load generator's
// ceiling drives a bare raft and state machine through it, so that its
// entries are as large as a node's under the same load. The raft must be
// a single voter that leads; its state machine's result for an entry that
// holds a CommandBatch must be a []*fsm.Result with one result per
// command, and a *fsm.Result for an entry of one command.
type Proposer struct{ p *proposer }

// NewProposer starts a proposer on r; timeout bounds each entry's apply.
func NewProposer(r *raft.Raft, timeout time.Duration) *Proposer {
	refuse := func([]byte) (*pb.ForwardResponse, error) { return nil, errNotLeader }
	return &Proposer{p: newProposer(r, refuse, timeout)}
}

// Propose submits cmd and waits until the entry holding it is applied,
// and returns that entry's index.
func (p *Proposer) Propose(ctx context.Context, cmd *pb.Command) (uint64, error) {
	pr := p.p.submit(cmd)
	select {
	case o := <-pr.out:
		return o.index, o.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close stops the proposer once every submitted command has its outcome.
// Call it before the raft shuts down: raft never answers an entry it has
// committed but not applied when it stops.
func (p *Proposer) Close() { p.p.close() }
