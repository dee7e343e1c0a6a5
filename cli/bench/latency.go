package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// runLatency measures send-to-delivery latency at a fixed rate (an open
// loop): Groups groups, each with one sending and one receiving user.
// Every message has an intended send time on a fixed schedule and latency
// is measured from it, not from when the send actually left: a server
// that stalls makes the sends behind the stall late, and their lateness
// counts (no coordinated omission).
func (r *runner) runLatency(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	rate := cfg.Rate
	if rate == 0 {
		rate = DefaultRate
		if r.sendPeak > 0 {
			rate = r.sendPeak / 2
		}
	}
	res := Result{Params: map[string]any{"groups": cfg.Groups, "rate": rate,
		"in_flight": cfg.InFlight, "size": cfg.MessageSize, "duration_sec": cfg.Duration.Seconds()}}

	// Users 0..Groups-1 own a group each and send; users Groups.. are the
	// receivers, one in each group, and time every message of their group.
	base := time.Now()
	lat := newLatencies()
	receive := func(i int, gid uint64) func(*pb.Event) {
		if i < cfg.Groups {
			return nil
		}
		return func(e *pb.Event) {
			msg := e.GetMessage()
			if msg == nil || msg.GroupId != gid {
				return
			}
			if due, ok := stampOf(base, msg.Text); ok {
				lat.record(i, time.Since(due))
				m.deliveries.Add(1)
			}
		}
	}
	clients, gids, err := r.sendSetup(ctx, "l", 2*cfg.Groups, cfg.Groups, receive)
	defer closeAll(clients)
	if err != nil {
		return res, err
	}

	p.setPhase("sending")
	defer r.profileCPU(ctx, Latency, cfg.Duration)()
	var acked atomic.Int64
	elapsed := r.openLoop(ctx, clients[:cfg.Groups], gids, rate, base, &acked, m)
	p.setPhase("draining")
	waitQuiet(ctx, &m.deliveries)
	m.ops.Store(m.deliveries.Load())
	m.deliveries.Store(0)
	m.errors.Add(lost(clients) + max(0, acked.Load()-m.ops.Load()))

	res.setRate(m, elapsed)
	res.setLatency(lat.merged())
	return res, nil
}

// openLoop sends rate messages per second in all, spread evenly over the
// senders, each sender gid[i] on its own schedule, until Duration has
// passed. Each sender may have InFlight sends outstanding; when all are
// waiting, the next sends leave late, stamped with their intended time.
func (r *runner) openLoop(ctx context.Context, senders []*transport.Client, gids []uint64,
	rate float64, base time.Time, acked *atomic.Int64, m *meter) time.Duration {
	n := len(senders)
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range senders {
		var next atomic.Int64
		offset := time.Duration(float64(time.Second) * float64(i) / rate)
		for range r.cfg.InFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					due := start.Add(offset + time.Duration(next.Add(1)-1)*interval)
					if !due.Before(end) {
						return
					}
					time.Sleep(time.Until(due))
					if _, err := c.Send(ctx, gids[i], r.text(base, due), ""); err != nil {
						m.errors.Add(1)
						return
					}
					acked.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	return max(time.Since(start), r.cfg.Duration)
}
