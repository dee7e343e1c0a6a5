package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// proxy relays TCP client connections to a server, frame by frame, and can
// lose the answer to a request: it lets the request through, waits for
// the server's response and, instead of relaying it, cuts the connection,
// as a network failure at the worst moment would.
type proxy struct {
	ln     net.Listener
	target string
	lost   atomic.Int32 // answers lost

	mu     sync.Mutex
	conns  []net.Conn
	loseIf func(*pb.ClientFrame) bool // the next request it matches loses its answer
	wg     sync.WaitGroup
}

// loseNext makes the next request that match accepts lose its answer.
func (p *proxy) loseNext(match func(*pb.ClientFrame) bool) {
	p.mu.Lock()
	p.loseIf = match
	p.mu.Unlock()
}

// losing reports whether f is the request to lose the answer of, and if
// so stops looking for one.
func (p *proxy) losing(f *pb.ClientFrame) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loseIf == nil || !p.loseIf(f) {
		return false
	}
	p.loseIf = nil
	return true
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// close stops accepting and cuts every connection.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		var cutting atomic.Bool // a request went through whose answer is to be lost
		p.wg.Add(2)
		go p.relay(client, server, func(payload []byte) bool {
			var f pb.ClientFrame
			if proto.Unmarshal(payload, &f) == nil && p.losing(&f) {
				cutting.Store(true)
			}
			return true
		})
		go p.relay(server, client, func(payload []byte) bool {
			var f pb.ServerFrame
			if proto.Unmarshal(payload, &f) == nil && f.GetResponse() != nil &&
				cutting.Load() {
				p.lost.Add(1)
				return false
			}
			return true
		})
	}
}

// relay copies frames from src to dst while pass lets them through, then
// closes both.
func (p *proxy) relay(src, dst net.Conn, pass func([]byte) bool) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(src, payload); err != nil || !pass(payload) {
			return
		}
		if _, err := dst.Write(append(hdr[:], payload...)); err != nil {
			return
		}
	}
}
