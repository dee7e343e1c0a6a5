package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// A group's history, as the linearizability checker sees it: sends
// append a message and are answered with its seq; a linearizable read of
// the newest message is answered with its seq and client message ID.
type (
	logState struct {
		seq  uint64
		last string
	}
	logInput struct {
		send bool
		id   string
	}
	logOutput struct {
		unknown bool // a send whose outcome the sender never learned
		seq     uint64
		last    string
		// lastUnknown marks a read whose page did not reach the newest
		// message: it tells the newest seq but not that message's ID.
		lastUnknown bool
	}
)

var groupLogModel = porcupine.Model{
	Init: func() any { return logState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(logState), input.(logInput), output.(logOutput)
		if in.send {
			next := logState{seq: s.seq + 1, last: in.id}
			return out.unknown || out.seq == next.seq, next
		}
		return out.seq == s.seq && (out.lastUnknown || out.last == s.last), s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(logInput), output.(logOutput)
		switch {
		case !in.send && out.lastUnknown:
			return fmt.Sprintf("read -> %d ?", out.seq)
		case !in.send:
			return fmt.Sprintf("read -> %d %s", out.seq, out.last)
		case out.unknown:
			return fmt.Sprintf("send %s -> ?", in.id)
		}
		return fmt.Sprintf("send %s -> %d", in.id, out.seq)
	},
}

// opHistory records operations with their call and return times.
type opHistory struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *opHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *opHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *opHistory) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// TestCluster_Linearizable has clients on every node send to one group
// and read its newest message with linearizable reads (history and sync
// in turn), kills the shard's leader while they do, and checks the recorded history with porcupine:
// some single order of the operations, each placed between its call and
// its return, must explain every answer. A send that failed with
// UNAVAILABLE must not have taken effect; one whose outcome is unknown
// (TIMEOUT, or its connection lost) may have, at any time after its call.
func TestCluster_Linearizable(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	var clients []*transport.Client
	for i := range 2 * len(c.nodes) {
		cl, l := user(t, c.nodes[i%len(c.nodes)].ClientAddr(), false, fmt.Sprintf("u%d", i))
		must(cl.ApplyGroup(ctx, g.GroupId, "", ""))(t)
		if err := owner.Decide(ctx, g.GroupId, l.User.UserId, true); err != nil {
			t.Fatal(err)
		}
		go drain(cl)
		clients = append(clients, cl)
	}
	init := must(owner.History(ctx, g.GroupId, 0, 1, transport.Linearizable()))(t)
	model := groupLogModel
	model.Init = func() any { return logState{seq: init.LastSeq} }

	h := &opHistory{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ids := 0
	run := func(cl *transport.Client) {
		id := ids
		ids++
		wg.Add(1)
		go func() {
			defer wg.Done()
			linearClient(t, id, cl, g.GroupId, h, stop)
		}()
	}
	for _, cl := range clients {
		run(cl)
	}
	c.waitFor("operations before the crash", func() bool { return h.len() >= 150 })
	for round := 1; round <= *clusterRounds; round++ {
		began := time.Now()
		victim := c.leader(c.nodes[0].shardOf(g.GroupId))
		c.crash(victim)
		before := h.len()
		c.waitFor("operations after the crash", func() bool { return h.len() >= before+150 })
		holdLoad(began)
		if round == *clusterRounds {
			break
		}
		// The victim's clients ended with it; new ones take their place.
		c.start(victim)
		c.waitVoters(3)
		for i := victim; i < 2*len(c.nodes); i += len(c.nodes) {
			cl := dial(t, c.nodes[victim].ClientAddr(), false)
			must(cl.Login(ctxFor(t), fmt.Sprintf("u%d", i), fmt.Sprintf("pw-u%d", i)))(t)
			go drain(cl)
			run(cl)
		}
	}
	close(stop)
	wg.Wait()

	end := h.now()
	c.waitConverged()
	stored := make(map[string]uint64)
	for _, m := range storedMessages(t, c.running()[0], g.GroupId) {
		stored[m.ClientMsgId] = m.Seq
	}
	h.ops = resolveUnknown(h.ops, stored, end+1)
	res, info := porcupine.CheckOperationsVerbose(model, h.ops,
		time.Duration(*clusterRounds)*time.Minute)
	if res != porcupine.Ok {
		file := filepath.Join(os.TempDir(),
			fmt.Sprintf("schat-linearizability-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(model, info, file); err == nil {
			t.Logf("visualization in %s", file)
		}
		why := explain(h.ops)
		t.Fatalf("history of %d operations: got %v, want linearizable; %s", len(h.ops), res,
			strings.Join(why[:min(len(why), 10)], "\n"))
	}
	t.Logf("%d operations linearizable", len(h.ops))
}

// linearClient alternates sends and linearizable reads of gid through cl
// until stop closes or its connection ends, recording each in h. The reads
// are histories and syncs in turn.
func linearClient(t *testing.T, id int, cl *transport.Client, gid uint64, h *opHistory,
	stop <-chan struct{}) {
	var seen uint64 // the newest seq this client was told of
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		op := porcupine.Operation{ClientId: id, Call: h.now()}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var err error
		switch i % 4 {
		case 0, 2:
			err = linearSend(ctx, cl, gid, fmt.Sprintf("c%d-%d", id, i), &op)
		case 1:
			err = linearRead(ctx, cl, gid, &op)
		case 3:
			err = linearSync(ctx, cl, gid, seen, &op)
		}
		cancel()
		switch {
		case err == nil:
			op.Return = h.now()
			h.add(op)
			seen = max(seen, op.Output.(logOutput).seq)
		case errors.Is(err, pb.ErrCode(pb.Code_UNAVAILABLE)):
			// Not carried out: nothing to record.
		case op.Input.(logInput).send && unknownOutcome(err):
			op.Output, op.Return = logOutput{unknown: true}, math.MaxInt64
			h.add(op)
		case !op.Input.(logInput).send && unknownOutcome(err):
			// A read that got no answer has no effect.
		default:
			t.Errorf("client %d: %v", id, err)
			return
		}
		if errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrClientClosed) {
			return
		}
	}
}

// resolveUnknown settles the sends whose senders never learned their
// outcome, using what the group stores once the load is over. One that is
// stored took effect at some point after its call, at the seq it is
// stored at. One that is not stored is left out: an unknown send
// constrains nothing and may always be placed after every other
// operation, and no read saw it, or it would be stored. Without this the
// checker tries every place for every such send and may not finish.
// Unknown sends are open until end.
func resolveUnknown(ops []porcupine.Operation, stored map[string]uint64,
	end int64) []porcupine.Operation {
	out := ops[:0]
	for _, op := range ops {
		if o := op.Output.(logOutput); o.unknown {
			seq, ok := stored[op.Input.(logInput).id]
			if !ok {
				continue
			}
			op.Output, op.Return = logOutput{seq: seq}, end
		}
		out = append(out, op)
	}
	return out
}

func unknownOutcome(err error) bool {
	return errors.Is(err, pb.ErrCode(pb.Code_TIMEOUT)) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrClientClosed)
}

func linearSend(ctx context.Context, cl *transport.Client, gid uint64, msgID string,
	op *porcupine.Operation) error {
	op.Input = logInput{send: true, id: msgID}
	m, err := cl.Send(ctx, gid, msgID, msgID)
	if err == nil {
		op.Output = logOutput{seq: m.Seq}
	}
	return err
}

func linearRead(ctx context.Context, cl *transport.Client, gid uint64,
	op *porcupine.Operation) error {
	op.Input = logInput{}
	page, err := cl.History(ctx, gid, 0, 1, transport.Linearizable())
	if err != nil {
		return err
	}
	out := logOutput{seq: page.LastSeq}
	if n := len(page.Messages); n > 0 {
		out.last = page.Messages[n-1].ClientMsgId
	}
	op.Output = out
	return nil
}

// linearSync reads the newest message of gid with a linearizable sync
// from just before seen, the newest seq the client knows of: the page then
// holds the newest message unless more than a page came after seen.
func linearSync(ctx context.Context, cl *transport.Client, gid, seen uint64,
	op *porcupine.Operation) error {
	op.Input = logInput{}
	page, err := cl.Sync(ctx, gid, max(seen, 1)-1, 200, false, transport.Linearizable())
	if err != nil {
		return err
	}
	out := logOutput{seq: page.LastSeq, lastUnknown: page.More}
	if n := len(page.Messages); n > 0 {
		out.last = page.Messages[n-1].ClientMsgId
	}
	op.Output = out
	return nil
}

// explain names the simplest violations in a history: reads that missed
// a send acknowledged before they began, and sends and reads that saw
// each other out of time.
func explain(ops []porcupine.Operation) []string {
	var out []string
	unknown := 0
	for _, s := range ops {
		in, o := s.Input.(logInput), s.Output.(logOutput)
		if !in.send {
			continue
		}
		if o.unknown {
			unknown++
			continue
		}
		for _, r := range ops {
			ro := r.Output.(logOutput)
			if r.Input.(logInput).send || r.Call <= s.Return {
				continue
			}
			if ro.seq < o.seq {
				out = append(out, fmt.Sprintf("read [%d,%d] saw seq %d; send %s acknowledged "+
					"at seq %d by %d", r.Call, r.Return, ro.seq, in.id, o.seq, s.Return))
			}
		}
	}
	return append(out, fmt.Sprintf("%d sends of unknown outcome", unknown))
}
