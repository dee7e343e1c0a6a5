package node

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// rawClient speaks the TCP framing by hand, to send what the Go client
// never would.
type rawClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	return dialRawFrom(t, addr, "")
}

// dialRawFrom connects from the local address ip ("" for any): any
// 127.x.y.z is the loopback on Linux, so tests can speak for clients at
// different addresses.
func dialRawFrom(t testing.TB, addr, ip string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (r *rawClient) writeRaw(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame prefixes payload with its length.
func frame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

func (r *rawClient) request(f *pb.ClientFrame) *pb.Response {
	r.t.Helper()
	b, err := proto.Marshal(f)
	if err != nil {
		r.t.Fatal(err)
	}
	r.writeRaw(frame(b))
	return r.response()
}

// response reads the next response, skipping events.
func (r *rawClient) response() *pb.Response {
	r.t.Helper()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
			r.t.Fatalf("read response: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(r.r, body); err != nil {
			r.t.Fatalf("read response body: %v", err)
		}
		var sf pb.ServerFrame
		if err := proto.Unmarshal(body, &sf); err != nil {
			r.t.Fatalf("got %v (%v), want a response", &sf, err)
		}
		if sf.GetEvent() == nil {
			if sf.GetResponse() == nil {
				r.t.Fatalf("got %v, want a response", &sf)
			}
			return sf.GetResponse()
		}
	}
}

// closed fails unless the server closes the connection.
func (r *rawClient) closed() {
	r.t.Helper()
	if _, err := r.r.ReadByte(); err == nil {
		r.t.Fatalf("connection still open, want it closed")
	}
}

// TestNode_BadInput sends malformed, oversized and forbidden requests;
// each gets its code or a closed connection, and a bystander connected
// throughout keeps being served.
func TestNode_BadInput(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	bystander, _ := user(t, n.ClientAddr(), false, "bystander")
	g := must(bystander.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "ok"}))(t)
	stillServed := func() {
		t.Helper()
		must(bystander.Send(ctx, g.GroupId, "still here", ""))(t)
	}

	t.Run("closes", func(t *testing.T) {
		for name, b := range map[string][]byte{
			"oversized": binary.BigEndian.AppendUint32(nil, 1<<30),
			"garbage":   frame([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}),
			"bad-utf8":  frame(badUTF8Send()),
		} {
			t.Run(name, func(t *testing.T) {
				r := dialRaw(t, n.ClientAddr())
				r.writeRaw(b)
				r.closed()
				stillServed()
			})
		}
	})
	t.Run("truncated", func(t *testing.T) {
		r := dialRaw(t, n.ClientAddr())
		r.writeRaw(frame([]byte("0123456789"))[:8])
		r.c.(*net.TCPConn).CloseWrite()
		r.closed()
		stillServed()
	})
	t.Run("codes", func(t *testing.T) { testCodes(t, n) })
	stillServed()
}

// badUTF8Send is a send_message frame whose text is not UTF-8.
func badUTF8Send() []byte {
	inner := protowire.AppendTag(nil, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 1001)
	inner = protowire.AppendTag(inner, 3, protowire.BytesType)
	inner = protowire.AppendBytes(inner, []byte{0xc3, 0x28})
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 40, protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

func testCodes(t *testing.T, n *Node) {
	r := dialRaw(t, n.ClientAddr())
	unknown := protowire.AppendTag(nil, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 9)
	unknown = protowire.AppendTag(unknown, 999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, nil)
	r.writeRaw(frame(unknown))
	if resp := r.response(); resp.Id != 9 || resp.Code != pb.Code_UNKNOWN_REQUEST {
		t.Fatalf("unknown request: got %v, want id 9 UNKNOWN_REQUEST", resp)
	}
	long := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name string
		f    *pb.ClientFrame
		want pb.Code
	}{
		{"before-login", &pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_ListMyGroups{
			ListMyGroups: &pb.ListMyGroupsRequest{}}}, pb.Code_UNAUTHENTICATED},
		{"send-before-login", &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_SendMessage{
			SendMessage: &pb.SendMessageRequest{GroupId: 1, Text: "x"}}}, pb.Code_UNAUTHENTICATED},
		{"long-login", &pb.ClientFrame{Id: 3, Body: &pb.ClientFrame_Register{
			Register: &pb.RegisterRequest{LoginName: long, Password: "secret"}}}, pb.Code_TOO_LONG},
		{"bad-login-chars", &pb.ClientFrame{Id: 4, Body: &pb.ClientFrame_Register{
			Register: &pb.RegisterRequest{LoginName: "a b", Password: "secret"}}},
			pb.Code_INVALID_ARGUMENT},
		{"short-password", &pb.ClientFrame{Id: 5, Body: &pb.ClientFrame_Register{
			Register: &pb.RegisterRequest{LoginName: "ab", Password: "x"}}},
			pb.Code_INVALID_ARGUMENT},
		{"bad-resume", &pb.ClientFrame{Id: 6, Body: &pb.ClientFrame_Resume{
			Resume: &pb.ResumeRequest{Token: "forged"}}}, pb.Code_UNAUTHENTICATED},
		{"wrong-password", &pb.ClientFrame{Id: 7, Body: &pb.ClientFrame_Login{
			Login: &pb.LoginRequest{LoginName: "nobody", Password: "secret"}}},
			pb.Code_WRONG_PASSWORD},
		{"resume-after-too-many", &pb.ClientFrame{Id: 8, Body: &pb.ClientFrame_Resume{
			Resume: &pb.ResumeRequest{Token: "forged",
				After: make([]*pb.ShardIndex, maxShards+2)}}}, pb.Code_BAD_REQUEST},
	} {
		if resp := r.request(tc.f); resp.Id != tc.f.Id || resp.Code != tc.want {
			t.Errorf("%s: got id %d code %v, want id %d code %v", tc.name, resp.Id, resp.Code,
				tc.f.Id, tc.want)
		}
	}
	testLoggedInCodes(t, n, long)
}

func testLoggedInCodes(t *testing.T, n *Node, long string) {
	ctx := ctxT(t)
	c, l := user(t, n.ClientAddr(), false, "mallory")

	// Write indexes this cluster never reached, and of a shard it does
	// not have, are not waited for.
	r := dialRaw(t, n.ClientAddr())
	resp := r.request(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Resume{Resume: &pb.ResumeRequest{
		Token: l.Token,
		After: []*pb.ShardIndex{{Shard: 1, Index: 1 << 40}, {Shard: 999, Index: 7}}}}})
	if resp.Code != pb.Code_OK {
		t.Fatalf("resume naming unreachable write indexes: got %v, want OK", resp.Code)
	}
	resp = r.request(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_ListMyGroups{
		ListMyGroups: &pb.ListMyGroupsRequest{}}})
	if resp.Code != pb.Code_OK {
		t.Fatalf("read after that resume: got %v, want OK", resp.Code)
	}

	_, err := c.Send(ctx, 123456, "hi", "")
	wantCode(t, err, pb.Code_NOT_FOUND)
	g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "m"}))(t)
	_, err = c.Send(ctx, g.GroupId, long, "")
	wantCode(t, err, pb.Code_TOO_LONG)
	_, err = c.Send(ctx, g.GroupId, "   ", "")
	wantCode(t, err, pb.Code_INVALID_ARGUMENT)
	_, err = c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: long})
	wantCode(t, err, pb.Code_TOO_LONG)
	_, err = c.History(ctx, 0, 0, 0)
	wantCode(t, err, pb.Code_BAD_REQUEST)
	ids := make([]uint64, 1000)
	_, err = c.Profiles(ctx, ids...)
	wantCode(t, err, pb.Code_TOO_LONG)
}
