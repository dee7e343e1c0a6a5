package transport

import (
	"slices"
	"testing"
)

func TestQueue_TryPush_Bounded(t *testing.T) {
	q := newQueue[int](3)
	for i := range 3 {
		if !q.tryPush(i) {
			t.Fatalf("tryPush(%d) refused below the bound", i)
		}
	}
	if q.tryPush(3) {
		t.Fatal("tryPush accepted a fourth item into a queue of three")
	}
	if got := q.len(); got != 3 {
		t.Fatalf("got len %d, want 3", got)
	}
}

func TestQueue_TakeAll_InOrderAndReusesBuffer(t *testing.T) {
	q := newQueue[int](10)
	done := make(chan struct{})
	q.tryPush(1)
	q.tryPush(2)
	got, ok := q.takeAll(nil, done)
	if !ok || !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("got %v %v, want [1 2] true", got, ok)
	}
	q.tryPush(3)
	if got, _ = q.takeAll(got, done); !slices.Equal(got, []int{3}) {
		t.Fatalf("got %v, want [3]", got)
	}
	close(done)
	if _, ok := q.takeAll(got, done); ok {
		t.Fatal("takeAll on an empty queue went on after done was closed")
	}
}

func TestQueue_Push_WaitsForRoom(t *testing.T) {
	q := newQueue[int](1)
	done := make(chan struct{})
	q.tryPush(1)
	pushed := make(chan bool)
	go func() { pushed <- q.push(2, done) }()
	if got, _ := q.takeAll(nil, done); !slices.Equal(got, []int{1}) {
		t.Fatalf("got %v, want [1]", got)
	}
	if !<-pushed {
		t.Fatal("push gave up although room was made")
	}
	if got, _ := q.takeAll(nil, done); !slices.Equal(got, []int{2}) {
		t.Fatalf("got %v, want [2]", got)
	}
}

func TestQueue_PushClaim_OneTakerAtATime(t *testing.T) {
	q := newQueue[int](10)
	done := make(chan struct{})
	if !q.pushClaim(1, done) {
		t.Fatal("first pushClaim did not ask for a taker")
	}
	if q.pushClaim(2, done) {
		t.Fatal("second pushClaim asked for a taker while one runs")
	}
	for _, want := range []int{1, 2} {
		if got, ok := q.takeOrIdle(); !ok || got != want {
			t.Fatalf("got %d %v, want %d true", got, ok, want)
		}
	}
	if _, ok := q.takeOrIdle(); ok {
		t.Fatal("takeOrIdle took from an empty queue")
	}
	if !q.pushClaim(3, done) {
		t.Fatal("pushClaim after the taker ended did not ask for another")
	}
}

func TestQueue_TryPushAll_AllOrNothing(t *testing.T) {
	q := newQueue[int](4)
	if !q.tryPushAll([]int{1, 2, 3}) {
		t.Fatal("tryPushAll refused three items into an empty queue of four")
	}
	if q.tryPushAll([]int{4, 5}) {
		t.Fatal("tryPushAll accepted two items with room for one")
	}
	got, _ := q.takeAll(nil, make(chan struct{}))
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("got %v, want [1 2 3]: a refused push must add nothing", got)
	}
}

// A taker running beside the pusher only ever finds whole batches: each
// takeAll returns a run of complete batches, never part of one.
func TestQueue_TryPushAll_TakerSeesWholeBatches(t *testing.T) {
	const batches = 2000
	q := newQueue[int](1 << 20)
	done := make(chan struct{})
	go func() {
		for b := range batches {
			size := b%7 + 1
			vs := make([]int, size)
			for i := range vs {
				vs[i] = b*8 + i // batch b, item i; item 0 marks its start
			}
			q.tryPushAll(vs)
		}
	}()
	next := 0 // the batch expected to start the next take
	var buf []int
	for next < batches {
		var ok bool
		if buf, ok = q.takeAll(buf, done); !ok {
			t.Fatal("takeAll ended early")
		}
		for i := 0; i < len(buf); {
			size := next%7 + 1
			if buf[i] != next*8 || i+size > len(buf) || buf[i+size-1] != next*8+size-1 {
				t.Fatalf("take %v: batch %d not whole at offset %d", buf, next, i)
			}
			i += size
			next++
		}
	}
}
