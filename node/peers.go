package node

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// Node-to-node calls travel on the node port's service channel: one
// request and one response at a time per connection, framed like the
// client protocol. Connections are kept and reused.
const (
	peerMaxFrame    = 64 << 20 // a forwarded batch is at most a few MiB
	peerDialTimeout = 5 * time.Second
	peerIdleConns   = 4
)

// peers is a pool of authenticated connections to other nodes.
type peers struct {
	mux     *transport.Mux
	timeout time.Duration

	mu   sync.Mutex
	idle map[string][]*peerConn
}

type peerConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newPeers(mux *transport.Mux, timeout time.Duration) *peers {
	return &peers{mux: mux, timeout: timeout, idle: make(map[string][]*peerConn)}
}

// errPeerUnreachable means the request never reached the peer, so it was
// certainly not carried out and may be retried elsewhere.
var errPeerUnreachable = errors.New("node: peer unreachable")

// call sends req to the node at addr and returns its response. An error
// wrapping errPeerUnreachable means nothing was sent; any other error
// leaves the outcome unknown.
func (p *peers) call(addr string, req *pb.NodeRequest) (*pb.NodeResponse, error) {
	return p.callWithin(addr, req, p.timeout)
}

// callWithin is call with its own bound on connecting and on the round
// trip.
func (p *peers) callWithin(addr string, req *pb.NodeRequest,
	timeout time.Duration) (*pb.NodeResponse, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	pc, err := p.get(addr, min(timeout, peerDialTimeout))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errPeerUnreachable, addr, err)
	}
	pc.c.SetDeadline(time.Now().Add(timeout))
	resp, err := pc.roundTrip(b)
	if err != nil {
		pc.c.Close()
		// The request may have been read and carried out before the
		// connection broke.
		return nil, fmt.Errorf("%w: call %s: %w", errUnknownOutcome, addr, err)
	}
	pc.c.SetDeadline(time.Time{})
	p.put(addr, pc)
	return resp, nil
}

func (pc *peerConn) roundTrip(b []byte) (*pb.NodeResponse, error) {
	if err := transport.WriteFrame(pc.w, b); err != nil {
		return nil, err
	}
	if err := pc.w.Flush(); err != nil {
		return nil, err
	}
	payload, err := transport.ReadFrame(pc.r, peerMaxFrame, nil)
	if err != nil {
		return nil, err
	}
	resp := new(pb.NodeResponse)
	return resp, proto.Unmarshal(payload, resp)
}

func (p *peers) get(addr string, dialTimeout time.Duration) (*peerConn, error) {
	p.mu.Lock()
	if list := p.idle[addr]; len(list) > 0 {
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	c, err := p.mux.Dial(addr, transport.ChannelService, 0, dialTimeout)
	if err != nil {
		return nil, err
	}
	return &peerConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

func (p *peers) put(addr string, pc *peerConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[addr]) >= peerIdleConns {
		pc.c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], pc)
}

// close drops every idle connection.
func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, list := range p.idle {
		for _, pc := range list {
			pc.c.Close()
		}
		delete(p.idle, addr)
	}
}

// respErr turns a non-OK node response into an error.
func respErr(resp *pb.NodeResponse) error {
	if resp.Code == pb.Code_OK {
		return nil
	}
	return &pb.Error{Code: resp.Code, Detail: resp.Detail}
}
