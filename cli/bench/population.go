package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// The set-up of every scenario: users, groups and memberships, made through
// the client protocol like any client would, over a few connections in
// parallel. Registering, logging in and applying are rate limited per
// client address, so a server under test needs a high --rate-per-minute.

// password is every bench user's password.
const password = "bench-password"

// setupConns is how many connections set-up work is spread over.
const setupConns = 8

// account is a registered user with a session token, so that any number
// of connections can log in as it with Resume, which costs no password
// hash.
type account struct {
	id    uint64
	name  string
	token string
}

// dial connects client number i, spreading clients over the servers, and
// starts a goroutine that hands every event to onEvent (nil: discard) until
// the connection ends: a client must keep reading its events.
func (r *runner) dial(ctx context.Context, i, events int,
	onEvent func(*pb.Event)) (*transport.Client, error) {
	addr := r.cfg.Addrs[i%len(r.cfg.Addrs)]
	if r.cfg.WebSocket {
		addr = "ws://" + r.cfg.HTTPAddrs[i%len(r.cfg.HTTPAddrs)] + "/ws"
	}
	c, err := transport.Dial(ctx, transport.ClientConfig{Addr: addr, EventBuffer: events,
		Logger: r.log})
	if err != nil {
		return nil, err
	}
	go func() {
		for e := range c.Events() {
			if onEvent != nil {
				onEvent(e)
			}
		}
	}()
	return c, nil
}

// parallel runs fn for 0..n-1 on setupConns workers, each with its own
// connection, and returns the first error.
func (r *runner) parallel(ctx context.Context, n int,
	fn func(c *transport.Client, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range min(setupConns, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.dial(ctx, w, 0, nil)
			if err != nil {
				cancel(err)
				return
			}
			defer c.Close()
			for i := w; i < n && ctx.Err() == nil; i += setupConns {
				if err := fn(c, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return err
	}
	return nil
}

// accounts registers n users and logs each in once.
func (r *runner) accounts(ctx context.Context, role string, n int) ([]account, error) {
	out := make([]account, n)
	err := r.parallel(ctx, n, func(c *transport.Client, i int) error {
		name := fmt.Sprintf("%s-%s%d", r.runID, role, i)
		reg, err := c.Register(ctx, &pb.RegisterRequest{LoginName: name, Password: password})
		if err != nil {
			return fmt.Errorf("bench: register %s: %w", name, err)
		}
		login, err := c.Login(ctx, name, password)
		if err != nil {
			return fmt.Errorf("bench: login %s: %w", name, err)
		}
		out[i] = account{id: reg.UserId, name: name, token: login.Token}
		r.limitsOnce.Do(func() { r.serverLimits = login.Limits })
		return nil
	})
	return out, err
}

// limits are the server's limits, as the first login of the run told.
func (r *runner) limits() *pb.Limits { return r.serverLimits }

// connect opens a connection logged in as a.
func (r *runner) connect(ctx context.Context, i int, a account, events int,
	onEvent func(*pb.Event)) (*transport.Client, error) {
	c, err := r.dial(ctx, i, events, onEvent)
	if err != nil {
		return nil, err
	}
	if _, err := resume(ctx, c, a); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// resume logs c in as a. A node that did not take a's login may not have
// applied its session yet, so an unknown session is retried for a while.
func resume(ctx context.Context, c *transport.Client, a account) (*pb.LoginResponse, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		login, err := c.Resume(ctx, a.token)
		if !errors.Is(err, pb.ErrCode(pb.Code_UNAUTHENTICATED)) || time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("bench: resume %s: %w", a.name, err)
			}
			return login, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// group creates a group owned by owner and makes members join it: each
// applies and the owner approves.
func (r *runner) group(ctx context.Context, owner account, members []account) (uint64, error) {
	c, err := r.connect(ctx, 0, owner, 1<<16, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	g, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "bench " + owner.name})
	if err != nil {
		return 0, fmt.Errorf("bench: create group: %w", err)
	}
	err = r.parallel(ctx, len(members), func(mc *transport.Client, i int) error {
		if _, err := resume(ctx, mc, members[i]); err != nil {
			return err
		}
		if _, err := mc.ApplyGroup(ctx, g.GroupId, "", "bench"); err != nil {
			return fmt.Errorf("bench: apply: %w", err)
		}
		if err := c.Decide(ctx, g.GroupId, members[i].id, true); err != nil {
			return fmt.Errorf("bench: approve: %w", err)
		}
		return nil
	})
	return g.GroupId, err
}

// closeAll closes every client.
func closeAll(cs []*transport.Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Close()
			}()
		}
	}
	wg.Wait()
}
