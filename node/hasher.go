package node

import (
	"context"
	"time"

	pb "github.com/schat/schat/proto"
)

// hasher runs the service's argon2id work, at most cap(slots) hashes at
// once node-wide. Each hash holds KDFParams.Memory (19 MiB by default) and
// a core for tens of milliseconds, so running more at once than there are
// cores only multiplies the memory and delays them all.
//
// A request that finds every slot taken waits up to wait for one: a burst
// of logins (everyone reconnecting after a restart) is served in turn, at
// the pace of the cores. A request still waiting then is refused with
// RATE_LIMITED rather than queued on: under sustained overload the queue
// would only grow until requests time out, each still holding its
// connection. Waiters are bounded too, by the connections: each awaits at
// most one reply at a time.
type hasher struct {
	kdf   KDFParams
	slots chan struct{}
	wait  time.Duration
}

func newHasher(kdf KDFParams, concurrency int, wait time.Duration) *hasher {
	return &hasher{kdf: kdf, slots: make(chan struct{}, concurrency), wait: wait}
}

// hash returns a new hash of pw.
func (h *hasher) hash(ctx context.Context, pw string) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	return hashPassword(pw, h.kdf)
}

// check reports whether pw matches the stored hash.
func (h *hasher) check(ctx context.Context, pw string, stored []byte) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	return checkPassword(pw, stored)
}

// acquire takes a slot, waiting up to h.wait for one.
func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return pb.Errf(pb.Code_RATE_LIMITED, "server busy checking passwords, try again later")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.slots }
