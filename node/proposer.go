package node

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// proposer turns one shard's stream of commands into few, large raft
// entries. raft takes one entry at a time from its apply channel, so a
// busy shard would otherwise write as many entries per fsync as there are
// goroutines blocked in Apply. The proposer instead takes everything
// queued while raft was busy and proposes it as one CommandBatch entry.
//
// At most entriesInFlight entries are on their way through raft at once:
// one being written to the log while the one before it is applied. What is
// submitted meanwhile waits in the queue and goes into the next entry, so
// entries grow with the load instead of the log and the state file each
// committing as often as they can, contending for the same disk.
//
// Commands are proposed in the order they were submitted, so the log keeps
// one connection's pipelined writes in order.
//
// On the shard's leader the commands other nodes forward join the same
// queue (submitForwarded), so that the commands of every node share entries
// instead of each forwarded batch becoming an entry of its own.
type proposer struct {
	raft     *raft.Raft
	forward  forwardFunc // proposes an entry through another node
	timeout  time.Duration
	maxBatch int
	maxBytes int

	queue  chan *proposal
	carry  *proposal     // taken from the queue but left for the next batch; run's own
	slots  chan struct{} // one token per entry in flight
	flight chan flight
	done   chan struct{} // closed by stop: no more proposals are taken
	exited chan struct{} // closed once run and settle have returned

	mu       sync.Mutex     // orders submit against stop
	stopped  bool           // under mu
	entering sync.WaitGroup // submits between their check of stopped and the queue

	// entries and commands count the entries formed and the commands in
	// them, for the node's metrics.
	entries, commands atomic.Uint64
}

// proposal is one submitted command awaiting its outcome.
type proposal struct {
	data  []byte
	start time.Time
	out   chan outcome // receives exactly one outcome
	// forwarded marks a command another node proposed through this one.
	// It is proposed here or refused as never appended, never passed on:
	// its origin, which knows that no answer came, tries elsewhere.
	forwarded bool
}

// outcome is a command's fate: its result and log index, or an error.
type outcome struct {
	res   *fsm.Result
	index uint64
	err   error
}

// forwardFunc hands an entry to the shard's leader on another node and
// returns its index and results.
type forwardFunc func(entry []byte) (*pb.ForwardResponse, error)

// flight is a raft entry on its way through the log.
type flight struct {
	fut   raft.ApplyFuture
	batch []*proposal
	entry []byte
}

// Batch bounds: enough commands to fill raft's own per-fsync batch, and
// at most two upload chunks' worth of bytes, so that raft's count bounds
// (MaxAppendEntries entries per AppendEntries and per apply batch) are
// also bounds in bytes: 64 entries of this size are about 32 MiB.
const (
	batchMaxCommands = 256
	batchMaxBytes    = 2*fsm.ChunkSize + 4<<10
	proposalQueue    = 4096
)

// entriesInFlight bounds the entries proposed and not yet settled. Two
// keep the log's commit of one entry beside the state file's of the one
// before it. On two cores and one disk, against 64 in flight, two gave a
// third to a half of the p99 latency of an open loop at half the send
// peak and no lower send throughput, on one node and on three;
// BENCHMARKS.md has the commands to measure it.
const entriesInFlight = 2

func newProposer(r *raft.Raft, forward forwardFunc, timeout time.Duration) *proposer {
	p := &proposer{raft: r, forward: forward, timeout: timeout, maxBatch: batchMaxCommands,
		maxBytes: batchMaxBytes, queue: make(chan *proposal, proposalQueue),
		slots: make(chan struct{}, entriesInFlight), flight: make(chan flight, entriesInFlight),
		done: make(chan struct{}), exited: make(chan struct{})}
	go p.run()
	go p.settle()
	return p
}

// submit queues cmd and returns its proposal, whose out channel will
// receive the outcome.
func (p *proposer) submit(cmd *pb.Command) *proposal {
	pr := &proposal{start: time.Now(), out: make(chan outcome, 1)}
	data, err := proto.Marshal(cmd)
	if err != nil {
		pr.out <- outcome{err: err}
		return pr
	}
	pr.data = data
	p.enqueue(pr)
	return pr
}

// submitForwarded queues a command that another node forwarded, already
// encoded, and returns its proposal.
func (p *proposer) submitForwarded(data []byte) *proposal {
	pr := &proposal{data: data, start: time.Now(), out: make(chan outcome, 1), forwarded: true}
	p.enqueue(pr)
	return pr
}

// enqueue hands pr to run, or answers it at once when the proposer has
// stopped.
func (p *proposer) enqueue(pr *proposal) {
	// A submit that finds the proposer running is counted in entering
	// before stop can close done; run waits for those before it fails what
	// is queued, so no proposal is left in the queue unanswered.
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		pr.out <- outcome{err: errClosed}
		return
	}
	p.entering.Add(1)
	p.mu.Unlock()
	defer p.entering.Done()
	select {
	case p.queue <- pr:
	case <-p.done:
		pr.out <- outcome{err: errClosed}
	}
}

// run forms batches from the queue and hands them to raft, once an entry
// may be in flight.
func (p *proposer) run() {
	defer close(p.flight)
	for {
		first := p.carry
		p.carry = nil
		if first == nil {
			select {
			case first = <-p.queue:
			case <-p.done:
				p.failQueued()
				return
			}
		}
		select {
		case p.slots <- struct{}{}:
		case <-p.done:
			first.out <- outcome{err: errClosed}
			p.failQueued()
			return
		}
		batch := p.gather(first)
		entry := encodeBatch(batch)
		p.entries.Add(1)
		p.commands.Add(uint64(len(batch)))
		if p.raft.State() != raft.Leader {
			p.elsewhere(batch, entry)
			<-p.slots
			continue
		}
		p.flight <- flight{fut: p.raft.Apply(entry, p.timeout), batch: batch, entry: entry}
	}
}

// elsewhere gets a batch committed when this node did not lead the shard
// as the batch was formed, or raft refused it without appending it: it
// forwards the batch to the leader, or proposes it here again if this
// node has become the leader meanwhile, until the batch's deadline. It
// blocks its caller meanwhile; what queues up goes into later, larger
// batches.
func (p *proposer) elsewhere(batch []*proposal, entry []byte) {
	if kept := refuseForwarded(batch); len(kept) < len(batch) {
		if len(kept) == 0 {
			return
		}
		batch, entry = kept, encodeBatch(kept)
	}
	deadline := batch[0].start.Add(p.timeout)
	for {
		if p.raft.State() != raft.Leader {
			resp, err := p.forward(entry)
			if !errors.Is(err, errSelfLeader) {
				deliverForwarded(batch, resp, err)
				return
			}
		}
		fut := p.raft.Apply(entry, max(time.Until(deadline), time.Millisecond))
		err := fut.Error()
		if err == nil {
			deliver(flight{fut: fut, batch: batch})
			return
		}
		err = raftError(err)
		if !errors.Is(err, errNotLeader) || time.Now().After(deadline) {
			failAll(batch, err)
			return
		}
		select {
		case <-p.done:
			failAll(batch, errClosed)
			return
		case <-time.After(refusedRetry):
		}
	}
}

// refusedRetry is how long a proposer waits before proposing again an
// entry that raft refused, as it does while it hands leadership over.
const refusedRetry = 20 * time.Millisecond

// deliverForwarded delivers what the leader answered for a forwarded
// batch.
func deliverForwarded(batch []*proposal, resp *pb.ForwardResponse, err error) {
	if err == nil && len(resp.Results) != len(batch) {
		err = fmt.Errorf("leader returned %d results for %d commands",
			len(resp.Results), len(batch))
	}
	if err != nil {
		failAll(batch, err)
		return
	}
	for i, pr := range batch {
		pr.out <- outcome{res: decodeResult(resp.Results[i]), index: resp.Index}
	}
}

// refuseForwarded answers the forwarded commands of batch as never
// appended and returns the others.
func refuseForwarded(batch []*proposal) []*proposal {
	var kept []*proposal
	for _, pr := range batch {
		if pr.forwarded {
			pr.out <- outcome{err: errNotLeader}
			continue
		}
		kept = append(kept, pr)
	}
	return kept
}

func failAll(batch []*proposal, err error) {
	for _, pr := range batch {
		pr.out <- outcome{err: err}
	}
}

// gather adds whatever else is queued, within the batch bounds. A
// command that would take the batch past maxBytes waits for the next
// batch; one larger than maxBytes by itself goes alone.
func (p *proposer) gather(first *proposal) []*proposal {
	batch := []*proposal{first}
	size := len(first.data)
	for len(batch) < p.maxBatch {
		select {
		case pr := <-p.queue:
			if size+len(pr.data) > p.maxBytes {
				p.carry = pr
				return batch
			}
			batch = append(batch, pr)
			size += len(pr.data)
		default:
			return batch
		}
	}
	return batch
}

// encodeBatch is the entry for a batch: the command itself when alone,
// otherwise a Command holding a CommandBatch, built from the already
// encoded commands without decoding them again.
func encodeBatch(batch []*proposal) []byte {
	if len(batch) == 1 {
		return batch[0].data
	}
	size := 0
	for _, pr := range batch {
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(pr.data))
	}
	out := make([]byte, 0, protowire.SizeTag(batchField)+protowire.SizeBytes(size))
	out = protowire.AppendTag(out, batchField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(size))
	for _, pr := range batch {
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, pr.data)
	}
	return out
}

// batchField is the number of Command's batch field.
var batchField = protowire.Number((&pb.Command{}).ProtoReflect().Descriptor().
	Fields().ByName("batch").Number())

// errBadEntry means a forwarded entry is not one that encodeBatch forms.
var errBadEntry = errors.New("node: malformed forwarded entry")

// splitEntry returns the encoded commands of an entry that encodeBatch
// formed, and whether it held a CommandBatch: a CommandBatch is the
// entry's only field, and a single command never has that field.
func splitEntry(entry []byte) (cmds [][]byte, batch bool, err error) {
	num, typ, n := protowire.ConsumeTag(entry)
	if n < 0 || num != batchField || typ != protowire.BytesType {
		return [][]byte{entry}, false, nil
	}
	inner, m := protowire.ConsumeBytes(entry[n:])
	if m < 0 || n+m != len(entry) {
		return nil, false, errBadEntry
	}
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, false, errBadEntry
		}
		cmd, m := protowire.ConsumeBytes(inner[n:])
		if m < 0 || len(cmds) == batchMaxCommands {
			return nil, false, errBadEntry
		}
		cmds = append(cmds, cmd)
		inner = inner[n+m:]
	}
	if len(cmds) == 0 {
		return nil, false, errBadEntry
	}
	return cmds, true, nil
}

// settle waits for each entry in log order and delivers its results.
func (p *proposer) settle() {
	defer close(p.exited)
	for f := range p.flight {
		err := f.fut.Error()
		switch {
		case err == nil:
			deliver(f)
		case errors.Is(raftError(err), errNotLeader):
			// Never appended: leadership was lost before, or is being
			// handed over. Under a new leader, this batch may land after
			// later ones this node had proposed.
			p.elsewhere(f.batch, f.entry)
		default:
			failAll(f.batch, raftError(err))
		}
		<-p.slots
	}
}

func deliver(f flight) {
	index := f.fut.Index()
	switch r := f.fut.Response().(type) {
	case *fsm.Result:
		f.batch[0].out <- outcome{res: r, index: index}
	case []*fsm.Result:
		for i, pr := range f.batch {
			pr.out <- outcome{res: r[i], index: index}
		}
	default:
		err := fmt.Errorf("entry %d had no result", index)
		for _, pr := range f.batch {
			pr.out <- outcome{err: err}
		}
	}
}

// raftError sorts raft's apply errors: ErrNotLeader and
// ErrLeadershipTransferInProgress mean the entry was never appended;
// ErrLeadershipLost and ErrRaftShutdown mean it may still be committed
// (by the next leader, from a follower that has it).
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", errNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	return err
}

// failQueued answers every proposal still queued at shutdown.
func (p *proposer) failQueued() {
	p.entering.Wait()
	for {
		select {
		case pr := <-p.queue:
			pr.out <- outcome{err: errClosed}
		default:
			return
		}
	}
}

// stop stops taking proposals: those submitted later, and those queued
// and not yet proposed, fail with errClosed. Entries in flight go on.
func (p *proposer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.stopped = true
		close(p.done)
	}
}

// wait waits up to d for every submitted proposal to have its outcome,
// and reports whether they all have. raft answers an entry only while it
// runs: an entry it has committed but not yet applied when it shuts down
// is never answered, so a shard drains its proposer before raft shuts
// down.
func (p *proposer) wait(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// close stops the proposer and waits for what is in flight.
func (p *proposer) close() {
	p.stop()
	<-p.exited
}
