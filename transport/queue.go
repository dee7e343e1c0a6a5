package transport

import "sync"

// queue is a first-in first-out queue of at most max items between
// goroutines. Unlike a buffered channel, whose buffer is allocated whole
// up front, its memory grows with what is queued and is given back once it
// drains, so an idle connection holds next to nothing for its queues.
//
// Any goroutine may push; one goroutine takes. A queue's taker may also
// run only while there is something to take: pushClaim tells the pusher
// to start one, and takeOrIdle ends it.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	max   int
	busy  bool // a taker started by pushClaim is running

	ready chan struct{} // a token when an item was pushed since the last take
	room  chan struct{} // a token when an item was taken since the last push
}

// retainItems is the largest backing array a drained queue keeps.
const retainItems = 4

func newQueue[T any](max int) *queue[T] {
	return &queue[T]{max: max, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// tryPush appends v unless the queue is full, and reports whether it did.
func (q *queue[T]) tryPush(v T) bool {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	signal(q.ready)
	return true
}

// tryPushAll appends every item of vs, in order and under one lock, unless
// they do not all fit; it reports whether it did. A taker sees either all
// of vs or none of it.
func (q *queue[T]) tryPushAll(vs []T) bool {
	q.mu.Lock()
	if len(q.items)+len(vs) > q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, vs...)
	q.mu.Unlock()
	signal(q.ready)
	return true
}

// pushClaim appends v like push and reports whether the caller must start
// a taker, none running.
func (q *queue[T]) pushClaim(v T, done <-chan struct{}) (start bool) {
	for {
		q.mu.Lock()
		if len(q.items) < q.max {
			q.items = append(q.items, v)
			start, q.busy = !q.busy, true
			q.mu.Unlock()
			signal(q.ready)
			return start
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-done:
			return false
		}
	}
}

// takeOrIdle removes and returns the first item. On an empty queue it
// returns false and marks the taker gone, so that the next pushClaim
// starts another.
func (q *queue[T]) takeOrIdle() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		q.busy = false
		return zero, false
	}
	v := q.items[0]
	n := copy(q.items, q.items[1:])
	q.items[n] = zero
	q.items = q.items[:n]
	if n == 0 && cap(q.items) > retainItems {
		q.items = nil
	}
	signal(q.room)
	return v, true
}

// push appends v, waiting for room while the queue is full. It returns
// false, without appending, once done is closed.
func (q *queue[T]) push(v T, done <-chan struct{}) bool {
	for !q.tryPush(v) {
		select {
		case <-q.room:
		case <-done:
			return false
		}
	}
	return true
}

// takeAll removes and returns every queued item, in order, waiting while
// the queue is empty. buf, when not nil, is an earlier result the caller is
// done with: its array is reused. It returns false once done is closed.
func (q *queue[T]) takeAll(buf []T, done <-chan struct{}) ([]T, bool) {
	clear(buf)
	if cap(buf) > retainItems {
		buf = nil
	}
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			out := q.items
			q.items = buf[:0]
			q.mu.Unlock()
			signal(q.room)
			return out, true
		}
		q.mu.Unlock()
		if !q.wait(done) {
			return nil, false
		}
	}
}

// wait waits for a push, or returns false once done is closed.
func (q *queue[T]) wait(done <-chan struct{}) bool {
	select {
	case <-q.ready:
		return true
	case <-done:
		return false
	}
}

// len returns how many items are queued.
func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// signal leaves a token in c unless one is there already.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
