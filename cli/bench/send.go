package bench

import (
	"context"
	"strings"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// runSend measures acknowledged sends: Clients connections, one user
// each, in Groups groups, each connection keeping InFlight sends
// outstanding (a closed loop). Latency is from sending to the
// acknowledgement, which comes once the message is committed.
func (r *runner) runSend(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	res := Result{Params: map[string]any{"clients": cfg.Clients, "groups": cfg.Groups,
		"in_flight": cfg.InFlight, "size": cfg.MessageSize,
		"duration_sec": cfg.Duration.Seconds()}}

	clients, gids, err := r.sendSetup(ctx, "s", cfg.Clients, cfg.Groups, nil)
	defer closeAll(clients)
	if err != nil {
		return res, err
	}

	p.setPhase("sending")
	defer r.profileCPU(ctx, Send, cfg.Duration)()
	defer r.batching(ctx, res.Params)()
	lat := newLatencies()
	text := strings.Repeat("x", cfg.MessageSize)
	elapsed := closedLoop(ctx, cfg.Duration, len(clients), cfg.InFlight,
		func(ctx context.Context, i, j int) error {
			start := time.Now()
			_, err := clients[i].Send(ctx, gids[i], text, "")
			if err == nil {
				lat.record(i*cfg.InFlight+j, time.Since(start))
				m.ops.Add(1)
			}
			return err
		}, m)

	res.setRate(m, elapsed)
	res.setLatency(lat.merged())
	r.sendPeak = res.OpsPerSec
	return res, nil
}

// sendSetup registers n users in g groups, the first g owning one group
// each and the others joining group i mod g, and connects every user, the
// events of user i going to handler(i, its group) when handler is given.
// It returns the connections and each one's group.
func (r *runner) sendSetup(ctx context.Context, role string, n, g int,
	handler func(i int, gid uint64) func(*pb.Event)) ([]*transport.Client, []uint64, error) {
	users, err := r.accounts(ctx, role, n)
	if err != nil {
		return nil, nil, err
	}
	groups := make([]uint64, g)
	for k := range groups {
		var members []account
		for i := k + g; i < n; i += g {
			members = append(members, users[i])
		}
		if groups[k], err = r.group(ctx, users[k], members); err != nil {
			return nil, nil, err
		}
	}
	gids := make([]uint64, n)
	for i := range gids {
		gids[i] = groups[i%g]
	}
	clients, err := r.connectAll(ctx, users, func(i int) func(*pb.Event) {
		if handler == nil {
			return nil
		}
		return handler(i, gids[i])
	})
	return clients, gids, err
}

// eventBuffer is the event channel capacity of connections that receive
// messages while the load runs.
const eventBuffer = 1 << 14

// closedLoop runs op from inFlight goroutines for each of n connections
// until d has passed, each calling op again as soon as the last returns,
// and returns how long it ran. An op failing before the end is counted in
// m and ends its goroutine: the connection is likely gone.
func closedLoop(ctx context.Context, d time.Duration, n, inFlight int,
	op func(ctx context.Context, i, j int) error, m *meter) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		for j := range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if err := op(ctx, i, j); err != nil && ctx.Err() == nil {
						m.errors.Add(1)
						return
					}
				}
			}()
		}
	}
	<-ctx.Done()
	elapsed := time.Since(start)
	wg.Wait()
	return elapsed
}
