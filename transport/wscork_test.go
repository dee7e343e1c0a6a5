package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeRecorder is a net.Conn that records each Write.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *writeRecorder) SetWriteDeadline(time.Time) error { return nil }

func TestCorkConn_Write(t *testing.T) {
	big := bytes.Repeat([]byte("x"), corkBufferSize-2)
	for _, tc := range []struct {
		name   string
		corked []string // written while corked
		want   []string // the writes that reach the socket at uncork
	}{
		{"a burst leaves in one write", []string{"ab", "cd", "ef"}, []string{"abcdef"}},
		{"nothing held, nothing written", nil, nil},
		{"a full buffer goes out first", []string{string(big), "abc", "d"},
			[]string{string(big), "abcd"}},
		{"a write larger than the buffer goes through",
			[]string{"a", string(big) + "xxxx"}, []string{"a", string(big) + "xxxx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &writeRecorder{}
			c := &corkConn{Conn: rec, writeTimeout: time.Second}
			c.cork()
			for _, p := range tc.corked {
				if n, err := c.Write([]byte(p)); n != len(p) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if err := c.uncork(); err != nil {
				t.Fatal(err)
			}
			if got := strs(rec.writes); !equalStrs(got, tc.want) {
				t.Fatalf("socket writes %q, want %q", short(got), short(tc.want))
			}
			if c.buf != nil {
				t.Fatal("an uncorked connection kept its buffer")
			}
			rec.writes = nil
			c.Write([]byte("after"))
			if got := strs(rec.writes); !equalStrs(got, []string{"after"}) {
				t.Fatalf("after uncork: socket writes %q, want one write through", got)
			}
		})
	}
}

func strs(bs [][]byte) []string {
	var out []string
	for _, b := range bs {
		out = append(out, string(b))
	}
	return out
}

func equalStrs(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// short abbreviates long writes for a failure message.
func short(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s
		if len(s) > 16 {
			out[i] = fmt.Sprintf("%s...(%d bytes)", s[:8], len(s))
		}
	}
	return out
}

// countingListener counts the writes to the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A burst queued at once reaches a WebSocket client in order, in one write
// to the socket rather than one per message.
func TestWebSocket_BurstInOneWrite(t *testing.T) {
	h := newTestHandler()
	s, err := NewServer(ServerConfig{Handler: h, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", s.WebSocket())
	hs := httptest.NewUnstartedServer(mux)
	ln := &countingListener{Listener: hs.Listener}
	hs.Listener = ln
	hs.Start()
	var once sync.Once
	stop := func() { once.Do(func() { s.Close(); hs.Close() }) }
	t.Cleanup(stop)

	for _, json := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", json), func(t *testing.T) {
			url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
			c := dial(t, ClientConfig{Addr: url, JSON: json})
			conn := recv(t, h.connected)
			if json { // the server answers in the mode of the first request
				if _, err := c.Ping(testCtx(t)); err != nil {
					t.Fatal(err)
				}
			}
			const burst = 200
			ms := make([]*Message, burst)
			for i := range ms {
				ms[i] = testEvent(fmt.Sprintf("event %d", i))
			}
			before := ln.writes.Load()
			if !conn.SendAll(ms) {
				t.Fatal("SendAll refused the burst")
			}
			for i := range burst {
				want := fmt.Sprintf("event %d", i)
				if got := recv(t, c.Events()).GetMessage().GetText(); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if n := ln.writes.Load() - before; n != 1 {
				t.Fatalf("%d events left in %d socket writes, want 1", burst, n)
			}
		})
	}
}
