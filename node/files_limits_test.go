package node

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/schat/schat/proto"
)

// readRefusal reads the node's answer on a raw connection and returns its
// status and code. It fails the test if no answer comes within 10
// seconds.
func readRefusal(t testing.TB, c net.Conn) (int, *pb.Response) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer from the node: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r pb.Response
	if err := protojson.Unmarshal(b, &r); err != nil {
		t.Fatalf("answer %d %q is not a Response: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, &r
}

// TestFiles_UploadBodyIdle: an upload whose body stops arriving is ended
// after BodyIdle with an answer, and leaves nothing behind.
func TestFiles_UploadBodyIdle(t *testing.T) {
	cfg := testConfig(t)
	cfg.Files = DefaultConfig().Files
	cfg.Files.BodyIdle = 300 * time.Millisecond
	n := startNode(t, cfg)
	fg := newFileGroup(t, n)

	c := startUpload(t, n, fg.ownerTok, fg.gid, 40000)
	c.Write(bytes.Repeat([]byte("y"), 20000))
	n.waitSpooled(t, 20000)
	// The client sends nothing more and keeps the connection open.
	status, r := readRefusal(t, c)
	if status != http.StatusBadRequest || r.Code != pb.Code_BAD_REQUEST ||
		!strings.Contains(r.Detail, "sent nothing") {
		t.Fatalf("got %d %v %q, want 400 BAD_REQUEST for an idle body", status, r.Code, r.Detail)
	}
	n.waitNoSpool(t)
	if got := storedFiles(t, n); len(got) != 0 {
		t.Fatalf("got files %v after the idle upload, want none", got)
	}
	if n.spools.inUse() != 0 {
		t.Fatalf("got %d spool slots taken, want 0", n.spools.inUse())
	}
}

// TestFiles_SpoolLimits: while a user has MaxUserSpools uploads in
// progress on a node, or the node MaxSpools in all, one more is refused
// with LIMIT_EXCEEDED before its body is read; once they end, uploads go
// through again.
func TestFiles_SpoolLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.Files = DefaultConfig().Files
	cfg.Files.MaxSpools, cfg.Files.MaxUserSpools = 2, 1
	n := startNode(t, cfg)
	fg := newFileGroup(t, n)
	thirdTok := joinFileGroup(t, n, fg, "third")

	stall := func(token string, spools int) net.Conn {
		c := startUpload(t, n, token, fg.gid, 40000)
		c.Write([]byte("begun"))
		n.waitSpool(t, fmt.Sprintf("%d spool files", spools),
			func(s []int64) bool { return len(s) == spools })
		return c
	}
	// refused sends an upload head announcing a body it never sends: only
	// a refusal made before reading the body can answer it.
	refused := func(token, want string) {
		t.Helper()
		c := startUpload(t, n, token, fg.gid, 1000)
		defer c.Close()
		status, r := readRefusal(t, c)
		if status != http.StatusTooManyRequests || r.Code != pb.Code_LIMIT_EXCEEDED ||
			!strings.Contains(r.Detail, want) {
			t.Fatalf("got %d %v %q, want 429 LIMIT_EXCEEDED about %q", status, r.Code,
				r.Detail, want)
		}
	}

	first := stall(fg.ownerTok, 1)
	refused(fg.ownerTok, "of yours")
	second := stall(fg.memberTok, 2)
	refused(thirdTok, "this node")
	if got := len(n.spoolSizes(t)); got != 2 {
		t.Fatalf("got %d spool files after the refusals, want the 2 stalled uploads", got)
	}

	first.Close()
	second.Close()
	n.waitNoSpool(t)
	data := []byte("after the stalled uploads")
	info := chatUpload(t, n, thirdTok, fg.gid, "x", data)
	wantDownload(t, files(t, n, thirdTok), info.FileId, data, "application/octet-stream")
}

// joinFileGroup registers user name, makes them a member of fg's group
// and returns their token.
func joinFileGroup(t testing.TB, n *Node, fg fileGroup, name string) string {
	t.Helper()
	ctx := ctxT(t)
	c, l := user(t, n.ClientAddr(), false, name)
	must(c.ApplyGroup(ctx, fg.gid, "", ""))(t)
	if err := fg.owner.Decide(ctx, fg.gid, l.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	go drain(c)
	return l.Token
}

// FuzzParseUpload feeds hostile upload requests (path, query, token,
// length) through the HTTP parser and the node's routes to the upload's
// parsing: it never panics, and what it accepts is within bounds.
func FuzzParseUpload(f *testing.F) {
	f.Add("/upload/group/1001", "name=cat.png", "Bearer abc", "12")
	f.Add("/upload/avatar", "name=%F0%9D%84%9E", "Bearer "+strings.Repeat("t", 300), "-1")
	f.Add("/upload/group-avatar/0", "name=%ff", "Basic abc", "99999999999999999999")
	f.Add("/upload/group/18446744073709551616", "name=a&name=b", "Bearer ", "0")
	f.Add("/upload/group/%2e%2e", "name="+strings.Repeat("%F0%9D%84%9E", 300), "bearer x", "1")
	const maxSize = 1 << 20
	var got uploadRequest
	var gerr error
	var purpose pb.FilePurpose
	mux := http.NewServeMux()
	for _, u := range uploadRoutes {
		mux.HandleFunc(u.pattern, func(w http.ResponseWriter, r *http.Request) {
			purpose = u.purpose
			got, gerr = parseUpload(r, u.purpose, maxSize)
		})
	}
	f.Fuzz(func(t *testing.T, path, query, auth, length string) {
		raw := "POST " + path + "?" + query + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth +
			"\r\nContent-Length: " + length + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the HTTP server refuses it before any handler
		}
		got, gerr = uploadRequest{}, errNotRouted
		mux.ServeHTTP(discardWriter{}, req)
		if gerr != nil {
			return
		}
		switch {
		case got.token == "" || len(got.token) > maxToken:
			t.Fatalf("accepted a token of %d bytes", len(got.token))
		case checkText("name", got.name, maxFileName, false) != nil:
			t.Fatalf("accepted file name %q", got.name)
		case (got.gid == 0) != (purpose == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR):
			t.Fatalf("accepted group %d for %v", got.gid, purpose)
		case req.ContentLength > maxSize:
			t.Fatalf("accepted an announced length of %d", req.ContentLength)
		}
	})
}

// errNotRouted marks a fuzzed request that reached no upload route.
var errNotRouted = fmt.Errorf("not routed")

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
