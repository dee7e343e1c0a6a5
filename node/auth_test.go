package node

import (
	"errors"
	"net"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// TestCluster_Unauthenticated: a node with the wrong secret cannot join,
// garbage sent to the node port is refused, and the cluster is unharmed.
func TestCluster_Unauthenticated(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)

	cfg := testConfig(t)
	cfg.NodeID = "intruder"
	cfg.Join = []string{c.nodes[0].RaftAddr()}
	cfg.ClusterSecret = "not-the-secret"
	if n, err := New(cfg); !errors.Is(err, ErrSecret) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("joining with a wrong secret: got %v, want ErrSecret", err)
	}

	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		// a header, then a bad proof
		[]byte("SCHN\x01\x01\x00\x00\x00\x00" + string(make([]byte, 32))),
		make([]byte, 4096),
	} {
		conn, err := net.DialTimeout("tcp", c.nodes[1].RaftAddr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(junk)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		for {
			if _, err := conn.Read(buf); err != nil {
				break // closed by the node
			}
		}
		conn.Close()
	}

	a, _ := user(t, c.nodes[2].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "still fine"}))(t)
	must(a.Send(ctx, g.GroupId, "hello", ""))(t)
	c.waitVoters(3)
	c.waitConverged()
}
