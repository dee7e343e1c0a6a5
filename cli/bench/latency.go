package bench

import (
	"context"
	"math"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// runLatency measures send-to-delivery latency at a fixed rate (an open
// loop): Groups groups, each with one sending and one receiving user.
// Every message has an intended send time on a fixed schedule and latency
// is measured from it, not from when the send actually left: a server
// that stalls makes the sends behind the stall late, and their lateness
// counts (no coordinated omission). A sender does not wait for one send's
// acknowledgement before the next: each send runs on its own, up to
// openLoopInFlight at once per sender, so the load generator does not
// close the loop itself. How late the sends left their schedule is
// reported as the send lag.
func (r *runner) runLatency(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	rate := cfg.Rate
	if rate == 0 {
		rate = DefaultRate
		if r.sendPeak > 0 {
			rate = r.sendPeak / 2
		}
	}
	res := Result{Params: map[string]any{"groups": cfg.Groups, "rate": math.Round(rate),
		"max_outstanding_per_sender": openLoopInFlight, "size": cfg.MessageSize,
		"duration_sec": cfg.Duration.Seconds()}}

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
	defer r.batching(ctx, res.Params)()
	lag := newLatencies()
	elapsed := r.openLoop(ctx, clients[:cfg.Groups], gids, rate, base, lag, m)
	p.setPhase("draining")
	waitQuiet(ctx, &m.deliveries)
	m.errors.Add(lost(clients) + max(0, m.ops.Load()-m.deliveries.Load()))

	res.setRate(m, elapsed)
	res.setLatency(lat.merged())
	res.SendLagP99Ms = float64(lag.merged().ValueAtQuantile(99)) / 1000
	return res, nil
}

// openLoopInFlight bounds the sends of one latency sender awaiting their
// acknowledgement: as many requests as a server lets one connection have
// awaiting answers by default, beyond which it stops reading them.
var openLoopInFlight = transport.DefaultServerConfig().MaxInFlight

// openLoop sends rate messages per second in all, spread evenly over the
// senders, sender i to gids[i] on its own schedule, until Duration has
// passed; m counts the sends acknowledged. Each send runs in its own
// goroutine; a sender with openLoopInFlight sends outstanding waits, and
// the sends behind it leave late, stamped with their intended time. lag
// records how late each send left.
func (r *runner) openLoop(ctx context.Context, senders []*transport.Client, gids []uint64,
	rate float64, base time.Time, lag *latencies, m *meter) time.Duration {
	n := len(senders)
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range senders {
		offset := time.Duration(float64(time.Second) * float64(i) / rate)
		slots := make(chan struct{}, openLoopInFlight)
		send := func(due time.Time) {
			defer func() { <-slots; wg.Done() }()
			if _, err := c.Send(ctx, gids[i], r.text(base, due), ""); err != nil {
				m.errors.Add(1)
				return
			}
			m.ops.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				due := start.Add(offset + time.Duration(k)*interval)
				if !due.Before(end) || !sleepUntil(ctx, due) {
					return
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				lag.record(i, time.Since(due))
				wg.Add(1)
				go send(due)
			}
		}()
	}
	wg.Wait()
	return max(time.Since(start), r.cfg.Duration)
}

// sleepUntil waits until t, or returns false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
