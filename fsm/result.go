package fsm

import (
	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
)

// Result is what applying one command produced. raft hands it back through
// the ApplyFuture on the node that proposed the command; Code is OK unless
// a rule refused the command, in which case nothing was changed.
type Result struct {
	Code   pb.Code
	Detail string

	// Set by the commands that produce them.
	UserID   uint64
	GroupID  uint64
	User     *pb.User
	Group    *pb.Group
	Message  *pb.ChatMessage
	ReadSeq  uint64
	Unread   uint64
	Existing bool // the command repeated an earlier one (idempotent retry)
	File     *pb.FileInfo
	Count    uint64 // what a maintenance command changed: groups, records
}

// Err returns the refusal as a *pb.Error, or nil when Code is OK.
func (r *Result) Err() error {
	if r.Code == pb.Code_OK {
		return nil
	}
	return &pb.Error{Code: r.Code, Detail: r.Detail}
}

// applyCtx is the state of applying one entry.
type applyCtx struct {
	tx     *bolt.Tx
	index  uint64
	now    int64 // the command's stamped time, ms
	events []Event
	fx     *fileEffects // shared by the whole batch
}

func (a *applyCtx) emit(e Event) { a.events = append(a.events, e) }
