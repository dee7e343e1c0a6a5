package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
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
// then proves that the dialer holds the cluster secret: the listener sends
// a random 32-byte challenge, the dialer answers with
// HMAC-SHA256(secret, challenge | header), and the listener sends one byte
// of acceptance. After that the bytes belong to the channel. A connection
// that fails any step is closed and logged.
const (
	muxMagic   = "SCHN"
	muxVersion = 1
	muxHeader  = len(muxMagic) + 1 + 1 + 4
	muxNonce   = 32
	muxAccept  = 0x01

	// ChannelRaft carries one shard's raft RPCs.
	ChannelRaft byte = 1
	// ChannelService carries node-to-node service calls.
	ChannelService byte = 2
)

// MuxConfig configures the node port.
type MuxConfig struct {
	// Listener is the bound node port.
	Listener net.Listener
	// Secret is the cluster secret every node must prove it holds.
	// Required.
	Secret []byte
	// TLS, when set, is the server side of mutual TLS between nodes: the
	// connection is encrypted and the peer's certificate checked before
	// the header is read. ClientTLS is the dialing side. Both or neither.
	TLS       *tls.Config
	ClientTLS *tls.Config
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

	mu       sync.Mutex
	subs     map[muxKey]*muxListener
	live     map[*muxConn]struct{}
	isolated bool
	closed   bool
	wg       sync.WaitGroup
}

type muxKey struct {
	channel byte
	shard   uint32
}

// NewMux starts accepting on cfg.Listener.
func NewMux(cfg MuxConfig) (*Mux, error) {
	if cfg.Listener == nil || len(cfg.Secret) == 0 {
		return nil, errors.New("transport: mux needs a listener and a cluster secret")
	}
	if (cfg.TLS == nil) != (cfg.ClientTLS == nil) {
		return nil, errors.New("transport: node TLS needs both a server and a client config")
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
	m := &Mux{cfg: cfg, addr: addr, subs: make(map[muxKey]*muxListener),
		live: make(map[*muxConn]struct{})}
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

// route authenticates a connection and hands it to its channel. An
// isolated node refuses before the handshake, so that a dialer knows
// nothing it sent was read.
func (m *Mux) route(c net.Conn) {
	m.mu.Lock()
	refuse := m.isolated || m.closed
	m.mu.Unlock()
	if refuse {
		c.Close()
		return
	}
	c.SetDeadline(time.Now().Add(m.cfg.HeaderTimeout))
	if m.cfg.TLS != nil {
		tc := tls.Server(c, m.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			m.cfg.Logger.Warn("refused node connection", "remote", c.RemoteAddr().String(),
				"err", err)
			c.Close()
			return
		}
		c = tc
	}
	key, err := m.accept(c)
	c.SetDeadline(time.Time{})
	if err != nil {
		m.cfg.Logger.Warn("refused node connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	m.mu.Lock()
	l := m.subs[key]
	mc, ok := m.track(c)
	m.mu.Unlock()
	if !ok {
		c.Close()
		return
	}
	if l == nil || !l.deliver(mc) {
		m.cfg.Logger.Warn("node connection for unknown channel", "remote",
			c.RemoteAddr().String(), "channel", key.channel, "shard", key.shard)
		c.Close()
	}
}

// accept reads the header and checks the dialer's proof of the secret.
func (m *Mux) accept(c net.Conn) (muxKey, error) {
	var h [muxHeader]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return muxKey{}, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	if string(h[:4]) != muxMagic || h[4] != muxVersion {
		return muxKey{}, ErrBadHeader
	}
	nonce := make([]byte, muxNonce)
	if _, err := rand.Read(nonce); err != nil {
		return muxKey{}, err
	}
	if _, err := c.Write(nonce); err != nil {
		return muxKey{}, err
	}
	var proof [sha256.Size]byte
	if _, err := io.ReadFull(c, proof[:]); err != nil {
		return muxKey{}, fmt.Errorf("%w: %v", ErrNotAuthorized, err)
	}
	if !hmac.Equal(proof[:], muxProof(m.cfg.Secret, nonce, h[:])) {
		return muxKey{}, ErrNotAuthorized
	}
	if _, err := c.Write([]byte{muxAccept}); err != nil {
		return muxKey{}, err
	}
	return muxKey{channel: h[5], shard: binary.BigEndian.Uint32(h[6:])}, nil
}

func muxProof(secret, nonce, header []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(nonce)
	mac.Write(header)
	return mac.Sum(nil)
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

// Dial opens an authenticated connection to a channel of the node at addr.
func (m *Mux) Dial(addr string, channel byte, shard uint32,
	timeout time.Duration) (net.Conn, error) {
	m.mu.Lock()
	isolated := m.isolated
	m.mu.Unlock()
	if isolated {
		return nil, ErrIsolated
	}
	c, err := DialNode(addr, m.cfg.Secret, m.cfg.ClientTLS, channel, shard, timeout)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mc, ok := m.track(c)
	if !ok {
		c.Close()
		return nil, ErrIsolated
	}
	return mc, nil
}

// SetIsolated cuts this node off from the others, or reconnects it: while
// isolated, every node connection is closed and no new one is made in
// either direction. It lets tests and operators fence a node without
// stopping it.
func (m *Mux) SetIsolated(isolated bool) {
	m.mu.Lock()
	m.isolated = isolated
	var cut []*muxConn
	if isolated {
		for c := range m.live {
			cut = append(cut, c)
		}
	}
	m.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// track registers a live connection; false when the node is isolated.
// m.mu must be held.
func (m *Mux) track(c net.Conn) (*muxConn, bool) {
	if m.isolated || m.closed {
		return nil, false
	}
	mc := &muxConn{Conn: c, m: m}
	m.live[mc] = struct{}{}
	return mc, true
}

// muxConn is a node connection the mux can cut.
type muxConn struct {
	net.Conn
	m    *Mux
	once sync.Once
}

func (c *muxConn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.live, c)
		c.m.mu.Unlock()
	})
	return c.Conn.Close()
}

// DialNode opens an authenticated connection to a channel of the node at
// addr, proving knowledge of secret, over TLS when tlsCfg is set. It is
// what a Mux dials with.
func DialNode(addr string, secret []byte, tlsCfg *tls.Config, channel byte, shard uint32,
	timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if tlsCfg != nil {
		tc := tls.Client(c, tlsCfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("transport: node %s: %w: %v", addr, ErrNotAuthorized, err)
		}
		c = tc
	}
	if err := handshake(c, secret, muxHeaderBytes(channel, shard)); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: node %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func handshake(c net.Conn, secret, header []byte) error {
	if _, err := c.Write(header); err != nil {
		return err
	}
	nonce := make([]byte, muxNonce)
	if _, err := io.ReadFull(c, nonce); err != nil {
		// Under TLS 1.3 a peer refuses a client certificate only after
		// the client's handshake has returned: the refusal arrives here.
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" {
			return fmt.Errorf("%w: %v", ErrNotAuthorized, err)
		}
		return err
	}
	if _, err := c.Write(muxProof(secret, nonce, header)); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != muxAccept {
		return ErrNotAuthorized
	}
	return nil
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
