package main

import (
	"fmt"
	"testing"

	pb "github.com/schat/schat/proto"
)

// TestChat_RetryLandsOnce loses the answers to a chat and a create after
// the server carried them out: the client reconnects, sends each again
// with the same key, and one message and one group come of them.
func TestChat_RetryLandsOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	px := startProxy(t, srv.clientAddr)
	c := startChat(t, px.addr())
	wantResult(t, c.do("reg protoss 123 zelot 1 shenzhen"), "reg", codeOK)
	wantResult(t, c.do("login protoss 123"), "login", codeOK)

	px.loseNext(func(f *pb.ClientFrame) bool { return f.GetCreateGroup() != nil })
	created := c.do("create sc2 -")
	wantResult(t, created, "create", codeOK)
	c.waitEvent("reconnected", func(e line) bool { return e["resumed"] == true })
	groups := c.do("groups")
	if groups.num("count") != 1 {
		t.Fatalf("got groups %v after a retried create, want one", groups)
	}
	gid := created.num("grp_id")

	px.loseNext(func(f *pb.ClientFrame) bool { return f.GetSendMessage() != nil })
	sent := c.do(fmt.Sprintf("chat 0 %d once only", gid))
	wantResult(t, sent, "chat", codeOK)
	c.waitEvent("reconnected", func(e line) bool { return e["resumed"] == true })
	if n := px.lost.Load(); n != 2 {
		t.Fatalf("lost %d answers, want 2: the test proves nothing", n)
	}
	var seqs []uint64
	for _, m := range c.do(fmt.Sprintf("his %d", gid)).list("messages") {
		if m.str("text") == "once only" {
			seqs = append(seqs, m.num("seq"))
		}
	}
	if len(seqs) != 1 || seqs[0] != sent.num("seq") {
		t.Fatalf("got the message at seqs %v, want once, at %d", seqs, sent.num("seq"))
	}
	c.finish()
}

// TestChat_AddrFailover gives several addresses: the client skips one that
// does not answer, and when its node goes away it reconnects to the next
// and resumes the session there.
func TestChat_AddrFailover(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	a, b := startProxy(t, srv.clientAddr), startProxy(t, srv.clientAddr)
	c := startChat(t, freeAddr(t)+","+a.addr()+","+b.addr())
	wantResult(t, c.do("reg protoss 123 zelot 1 shenzhen"), "reg", codeOK)
	wantResult(t, c.do("login protoss 123"), "login", codeOK)

	a.close()
	c.waitEvent("disconnected", nil)
	wantResult(t, c.do("groups"), "groups", codeOK)
	e := c.waitEvent("reconnected", nil)
	if e["resumed"] != true || e.str("addr") != b.addr() {
		t.Fatalf("got %v, want the session resumed at %s", e, b.addr())
	}
	c.finish()
}
