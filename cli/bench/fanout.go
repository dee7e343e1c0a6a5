package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// runFanout measures delivery to a big group: Members users online in one
// group, Senders of them sending in a closed loop with InFlight each.
// Deliveries are the messages every member receives; latency is from the
// send to each delivery.
func (r *runner) runFanout(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	res := Result{Params: map[string]any{"members": cfg.Members, "senders": cfg.Senders,
		"in_flight": cfg.InFlight, "size": cfg.MessageSize,
		"duration_sec": cfg.Duration.Seconds()}}

	users, err := r.accounts(ctx, "f", cfg.Members)
	if err != nil {
		return res, err
	}
	gid, err := r.group(ctx, users[0], users[1:])
	if err != nil {
		return res, err
	}

	p.setPhase("connecting")
	base := time.Now()
	lat := newLatencies()
	var last atomic.Int64 // when the latest delivery arrived, since base
	clients, err := r.connectAll(ctx, users, func(i int) func(*pb.Event) {
		return func(e *pb.Event) {
			msg := e.GetMessage()
			if msg == nil || msg.GroupId != gid {
				return
			}
			if sent, ok := stampOf(base, msg.Text); ok {
				now := time.Now()
				lat.record(i, now.Sub(sent))
				m.deliveries.Add(1)
				last.Store(int64(now.Sub(base)))
			}
		}
	})
	defer closeAll(clients)
	if err != nil {
		return res, err
	}

	p.setPhase("sending")
	defer r.profileCPU(ctx, Fanout, cfg.Duration)()
	defer r.batching(ctx, res.Params)()
	start := time.Now()
	elapsed := closedLoop(ctx, cfg.Duration, cfg.Senders, cfg.InFlight,
		func(ctx context.Context, i, _ int) error {
			_, err := clients[i].Send(ctx, gid, r.text(base, time.Now()), "")
			if err == nil {
				m.ops.Add(1)
			}
			return err
		}, m)
	p.setPhase("draining")
	waitQuiet(ctx, &m.deliveries)
	m.errors.Add(lost(clients))

	res.setRate(m, elapsed)
	if spread := base.Add(time.Duration(last.Load())).Sub(start); spread > 0 {
		res.DeliveriesPerSec = float64(res.Deliveries) / spread.Seconds()
	}
	res.setLatency(lat.merged())
	return res, nil
}

// connectAll connects every user, in parallel; handler(i) handles the
// events of user i's connection.
func (r *runner) connectAll(ctx context.Context, users []account,
	handler func(i int) func(*pb.Event)) ([]*transport.Client, error) {
	clients := make([]*transport.Client, len(users))
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, u := range users {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := r.connect(ctx, i, u, eventBuffer, handler(i))
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return clients, err
	default:
		return clients, nil
	}
}

// waitQuiet waits until n has stopped growing for a while: the deliveries
// of the messages sent have all arrived. It gives up after a minute.
func waitQuiet(ctx context.Context, n *atomic.Int64) {
	const still = 300 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	prev, since := n.Load(), time.Now()
	for time.Since(since) < still && time.Now().Before(deadline) && ctx.Err() == nil {
		<-tick.C
		if cur := n.Load(); cur != prev {
			prev, since = cur, time.Now()
		}
	}
}

// lost counts the connections that ended before being closed.
func lost(clients []*transport.Client) int64 {
	var n int64
	for _, c := range clients {
		if c != nil && c.Err() != nil {
			n++
		}
	}
	return n
}
