package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The node-to-node port carries the raft traffic of every shard, and the
// services nodes call on each other, over one listener. Each connection
// opens with a fixed header naming what it is for:
//
//	magic "SCHN" | version u8 | channel u8 | shard u32
//
// after which the bytes belong to that channel.
const (
	muxMagic   = "SCHN"
	muxVersion = 1
	muxHeader  = len(muxMagic) + 1 + 1 + 4

	// ChannelRaft carries one shard's raft RPCs.
	ChannelRaft byte = 1
	// ChannelService carries node-to-node service calls.
	ChannelService byte = 2
)

// MuxConfig configures the node port.
type MuxConfig struct {
	// Listener is the bound node port.
	Listener net.Listener
	// Advertise is the address other nodes dial; defaults to the
	// listener's address.
	Advertise string
	// HeaderTimeout bounds how long an accepted connection may take to
	// send its header; defaults to 5s.
	HeaderTimeout time.Duration
	// Backlog is how many accepted connections may wait for one channel's
	// Accept; defaults to 16.
	Backlog int
	Logger  *slog.Logger
}

// Mux splits the node port into per-shard raft stream layers and a service
// channel. It is safe for concurrent use.
type Mux struct {
	cfg  MuxConfig
	addr net.Addr

	mu     sync.Mutex
	subs   map[muxKey]*muxListener
	closed bool
	wg     sync.WaitGroup
}

type muxKey struct {
	channel byte
	shard   uint32
}

// NewMux starts accepting on cfg.Listener.
func NewMux(cfg MuxConfig) (*Mux, error) {
	if cfg.Listener == nil {
		return nil, errors.New("transport: mux needs a listener")
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	addr := cfg.Listener.Addr()
	if cfg.Advertise != "" {
		tcp, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("transport: advertise address: %w", err)
		}
		addr = tcp
	}
	m := &Mux{cfg: cfg, addr: addr, subs: make(map[muxKey]*muxListener)}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr is the address other nodes dial.
func (m *Mux) Addr() net.Addr { return m.addr }

// Close stops the listener and every channel listener, and waits for the
// accept loop.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, l := range m.subs {
		l.close()
	}
	m.mu.Unlock()
	err := m.cfg.Listener.Close()
	m.wg.Wait()
	return err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.cfg.Listener.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

// route reads a connection's header and hands it to its channel.
func (m *Mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(m.cfg.HeaderTimeout))
	key, err := readMuxHeader(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		m.cfg.Logger.Warn("refused node connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	m.mu.Lock()
	l := m.subs[key]
	m.mu.Unlock()
	if l == nil || !l.deliver(c) {
		m.cfg.Logger.Warn("node connection for unknown channel", "remote",
			c.RemoteAddr().String(), "channel", key.channel, "shard", key.shard)
		c.Close()
	}
}

func readMuxHeader(r io.Reader) (muxKey, error) {
	var b [muxHeader]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return muxKey{}, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	if string(b[:4]) != muxMagic || b[4] != muxVersion {
		return muxKey{}, ErrBadHeader
	}
	return muxKey{channel: b[5], shard: binary.BigEndian.Uint32(b[6:])}, nil
}

func muxHeaderBytes(channel byte, shard uint32) []byte {
	b := make([]byte, 0, muxHeader)
	b = append(b, muxMagic...)
	b = append(b, muxVersion, channel)
	return binary.BigEndian.AppendUint32(b, shard)
}

// Listen returns the listener of one channel. Each channel may be listened
// on once.
func (m *Mux) Listen(channel byte, shard uint32) (net.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrMuxClosed
	}
	key := muxKey{channel, shard}
	if m.subs[key] != nil {
		return nil, fmt.Errorf("transport: channel %d shard %d already open", channel, shard)
	}
	l := &muxListener{m: m, key: key, ch: make(chan net.Conn, m.cfg.Backlog),
		done: make(chan struct{})}
	m.subs[key] = l
	return l, nil
}

// Dial opens a connection to a channel of the node at addr.
func (m *Mux) Dial(addr string, channel byte, shard uint32, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(muxHeaderBytes(channel, shard)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// RaftLayer returns a raft.StreamLayer for one shard's raft traffic.
func (m *Mux) RaftLayer(shard uint32) (raft.StreamLayer, error) {
	l, err := m.Listen(ChannelRaft, shard)
	if err != nil {
		return nil, err
	}
	return &raftLayer{Listener: l, m: m, shard: shard}, nil
}

type raftLayer struct {
	net.Listener
	m     *Mux
	shard uint32
}

func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return r.m.Dial(string(addr), ChannelRaft, r.shard, timeout)
}

// muxListener is one channel's net.Listener.
type muxListener struct {
	m    *Mux
	key  muxKey
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *muxListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, ErrMuxClosed
	}
}

func (l *muxListener) close() { l.once.Do(func() { close(l.done) }) }

// Close stops this channel; the node port stays open for the others.
func (l *muxListener) Close() error {
	l.m.mu.Lock()
	if l.m.subs[l.key] == l {
		delete(l.m.subs, l.key)
	}
	l.m.mu.Unlock()
	l.close()
	return nil
}

func (l *muxListener) Addr() net.Addr { return l.m.addr }
