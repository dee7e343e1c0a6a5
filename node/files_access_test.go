package node

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// fileCalls are an upload and a download made with one token.
func fileCalls(t testing.TB, n *Node, token string, gid uint64, id string) (up, down error) {
	t.Helper()
	fc := files(t, n, token)
	_, up = fc.Upload(ctxT(t), transport.ChatFile(gid), "x", strings.NewReader("data"), 4)
	_, down = fc.Download(ctxT(t), id, io.Discard)
	return up, down
}

// TestFiles_EndedSessions: a token whose session has expired, was logged
// out, or was revoked by a password change is refused for upload and
// download alike, and nothing is stored.
func TestFiles_EndedSessions(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	data := []byte("members only")
	info := chatUpload(t, n, fg.ownerTok, fg.gid, "m", data)
	before := len(storedFiles(t, n))

	// An expired session: stored like a login's, with an expiry passed.
	expired := expiredToken(t, n, "member")
	// Logged out.
	lc := dial(t, n.ClientAddr(), false)
	loggedOut := must(lc.Login(ctx, "member", "pw-member"))(t).Token
	if err := lc.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	// Revoked by a password change made from another session.
	pc := dial(t, n.ClientAddr(), false)
	must(pc.Login(ctx, "member", "pw-member"))(t)
	fresh := must(pc.ChangePassword(ctx, "pw-member", "pw-member-2"))(t).Token

	for name, tok := range map[string]string{"expired": expired, "logged out": loggedOut,
		"revoked by a password change": fg.memberTok} {
		t.Run(name, func(t *testing.T) {
			up, down := fileCalls(t, n, tok, fg.gid, info.FileId)
			wantCode(t, up, pb.Code_UNAUTHENTICATED)
			wantCode(t, down, pb.Code_UNAUTHENTICATED)
		})
	}
	if got := len(storedFiles(t, n)); got != before {
		t.Fatalf("got %d stored files after refused uploads, want %d", got, before)
	}
	wantDownload(t, files(t, n, fresh), info.FileId, data, "application/octet-stream")
}

// expiredToken stores a session of user login whose expiry has passed,
// through the same command a login proposes, and returns its token.
func expiredToken(t testing.TB, n *Node, login string) string {
	t.Helper()
	var u *pb.User
	err := n.shards[metaShard].fsm.View(func(tx *bolt.Tx) (err error) {
		u, err = fsm.UserByLogin(tx, login)
		return err
	})
	if err != nil || u == nil {
		t.Fatalf("user %s: %v", login, err)
	}
	token, hash, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	must(n.exec(ctxT(t), nil, metaShard, &pb.Command{Op: &pb.Command_CreateSession{
		CreateSession: &pb.CreateSessionCmd{UserId: u.Id, CredVersion: u.CredVersion,
			TokenHash: hash, ExpiresMs: time.Now().Add(-time.Second).UnixMilli()}}}))(t)
	return token
}

// TestFiles_CacheHeaders: answers to a token say private, no-cache (checked
// again at each use); answers to a signed link may be kept by the browser
// until the link expires, by no shared cache; a matching If-None-Match
// gets 304 only after the access check.
func TestFiles_CacheHeaders(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	info := chatUpload(t, n, fg.ownerTok, fg.gid, "p.png", testPNG(t, 40, 30))
	_, sl := user(t, n.ClientAddr(), false, "stranger")
	link := must(files(t, n, fg.memberTok).Link(ctx, info.FileId))(t)
	etag := `"` + info.Sha256 + `"`
	base := "http://" + n.HTTPAddr() + "/files/" + info.FileId

	get := func(url, token, ifNoneMatch string) *http.Response {
		t.Helper()
		req := must(http.NewRequestWithContext(ctx, http.MethodGet, url, nil))(t)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ifNoneMatch != "" {
			req.Header.Set("If-None-Match", ifNoneMatch)
		}
		resp := must(http.DefaultClient.Do(req))(t)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	signedCache := regexp.MustCompile(`^private, max-age=(\d+), immutable$`)
	tests := []struct {
		name, url, token, ifNoneMatch string
		status                        int
		cache                         string // exact, or "signed" for the pattern
	}{
		{"token", base, fg.memberTok, "", http.StatusOK, "private, no-cache"},
		{"token, revalidated", base, fg.memberTok, etag, http.StatusNotModified,
			"private, no-cache"},
		{"token, changed", base, fg.memberTok, `"other"`, http.StatusOK, "private, no-cache"},
		{"stranger, revalidated", base, sl.Token, etag, http.StatusForbidden, ""},
		{"signed link", link.Url, "", "", http.StatusOK, "signed"},
		{"signed link, revalidated", link.Url, "", etag, http.StatusNotModified, "signed"},
		{"thumbnail", base + "/thumb", fg.memberTok, "", http.StatusOK, "private, no-cache"},
		{"thumbnail, signed", link.ThumbnailUrl, "", "", http.StatusOK, "signed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(tc.url, tc.token, tc.ifNoneMatch)
			cc := resp.Header.Get("Cache-Control")
			if resp.StatusCode != tc.status {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tc.status)
			}
			switch m := signedCache.FindStringSubmatch(cc); {
			case tc.cache == "signed" && m == nil:
				t.Fatalf("got Cache-Control %q, want private, max-age, immutable", cc)
			case tc.cache == "signed":
				age, _ := strconv.Atoi(m[1])
				left := int(time.Until(time.UnixMilli(link.ExpiresMs)).Seconds()) + 1
				if age > left {
					t.Fatalf("got max-age %d, beyond the link's %d seconds left", age, left)
				}
			case tc.cache != "" && cc != tc.cache:
				t.Fatalf("got Cache-Control %q, want %q", cc, tc.cache)
			}
			if tc.cache != "" && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatal("X-Content-Type-Options: nosniff missing")
			}
			if tc.token != "" && tc.cache != "" && resp.Header.Get("Vary") != "Authorization" {
				t.Fatalf("got Vary %q on a token answer, want Authorization",
					resp.Header.Get("Vary"))
			}
		})
	}
}

// TestFiles_RangesOnMedia: voice and video are served with their type and
// answer Range requests, as players seeking in them send.
func TestFiles_RangesOnMedia(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	fc := files(t, n, fg.ownerTok)
	pad := bytes.Repeat([]byte{0x5a}, 3000)
	tests := []struct {
		name string
		data []byte
		kind pb.FileKind
		mime string
	}{
		{"amr", append([]byte("#!AMR\n"), pad...), pb.FileKind_FILE_KIND_VOICE, "audio/amr"},
		{"opus", append(oggPage("OpusHead"), pad...), pb.FileKind_FILE_KIND_VOICE, "audio/ogg"},
		{"m4a", append(ftyp("M4A "), pad...), pb.FileKind_FILE_KIND_VOICE, "audio/mp4"},
		{"mp4", append(ftyp("mp42"), pad...), pb.FileKind_FILE_KIND_VIDEO, "video/mp4"},
		{"webm", append(bytes.Clone(webm), pad...), pb.FileKind_FILE_KIND_VIDEO, "video/webm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info := chatUpload(t, n, fg.ownerTok, fg.gid, tc.name, tc.data)
			if info.Kind != tc.kind || info.Mime != tc.mime {
				t.Fatalf("got %v %q, want %v %q", info.Kind, info.Mime, tc.kind, tc.mime)
			}
			wantRange(t, fc, info.FileId, tc.data, 1000, 2999)
			wantRange(t, fc, info.FileId, tc.data, 0, 0)
			resp := must(fc.Get(ctxT(t), info.FileId, "bytes=-16"))(t)
			tail, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("Content-Type") != tc.mime ||
				!bytes.Equal(tail, tc.data[len(tc.data)-16:]) {
				t.Fatalf("suffix range: got %q with %d bytes, want %s and the last 16",
					resp.Header.Get("Content-Type"), len(tail), tc.mime)
			}
		})
	}
}

// TestFiles_HistoryPageFitsFrame: a history page of the most messages a
// client may ask for, each an image message with the longest caption,
// file name and sender name, fits the client's frame in the binary and
// the JSON protocol, within the bound the configuration is checked
// against: messages carry no thumbnail bytes.
func TestFiles_HistoryPageFitsFrame(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	l := n.cfg.Limits
	tests := []struct {
		name, char string
		json       bool
	}{
		{"binary, four-byte characters", "\U0001D11E", false},
		{"json, escaped characters", "\x01", true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			owner := fmt.Sprintf("pager%d", i)
			c := dial(t, n.ClientAddr(), false)
			ctx := ctxT(t)
			must(c.Register(ctx, &pb.RegisterRequest{LoginName: owner, Password: "pw-pager",
				DisplayName: strings.Repeat(tc.char, l.MaxName)}))(t)
			login := must(c.Login(ctx, owner, "pw-pager"))(t)
			g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "pages"}))(t)
			go drain(c)
			info := chatUpload(t, n, login.Token, g.GroupId, strings.Repeat(tc.char, maxFileName),
				testPNG(t, 64, 64))
			if info.ThumbnailSize == 0 {
				t.Fatal("the image got no thumbnail")
			}
			caption := strings.Repeat(tc.char, l.MaxMessage)
			for j := 0; j < l.MaxPage; j++ {
				must(c.SendFile(ctx, g.GroupId, pb.MessageType_MESSAGE_TYPE_IMAGE, info.FileId,
					caption, ""))(t)
			}

			reader := c
			if tc.json {
				reader = dial(t, "ws://"+n.HTTPAddr()+"/ws", true)
				must(reader.Resume(ctx, login.Token))(t)
			}
			page := must(reader.History(ctx, g.GroupId, 0, uint32(l.MaxPage)))(t)
			if len(page.Messages) != l.MaxPage || page.Messages[0].File.GetThumbnailSize() == 0 {
				t.Fatalf("got %d messages, want %d image messages", len(page.Messages), l.MaxPage)
			}
			size := proto.Size(page)
			if tc.json {
				size = len(must(protojson.Marshal(page))(t))
			}
			bound := l.MaxPage * maxMessageBytes(l)
			t.Logf("page of %d bytes; bound %d, frame %d", size, bound, clientFrame)
			if size > bound || size > clientFrame {
				t.Fatalf("page of %d bytes, want at most %d (and the %d-byte frame)", size, bound,
					clientFrame)
			}
		})
	}
}

// TestConfig_Validate_FileBounds: a page of messages that might not fit
// a client's frame, and missing upload bounds, are refused at start.
func TestConfig_Validate_FileBounds(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Config)
		ok    bool
	}{
		{"defaults", func(*Config) {}, true},
		{"a page of the longest messages over the frame", func(c *Config) {
			c.Limits.MaxPage = 1000
		}, false},
		{"longer messages in a smaller page", func(c *Config) {
			c.Limits.MaxMessage, c.Limits.MaxPage = 20000, 50
			c.Conns.MaxFrame = 128 << 10 // room for a request carrying such a message
		}, true},
		{"no spool slot", func(c *Config) { c.Files.MaxSpools = -1 }, false},
		{"a partial file config takes the node-side defaults", func(c *Config) {
			c.Files = FileConfig{MaxSize: 1, MaxUploads: 1, UploadTimeout: 1, UnclaimedTTL: 1,
				SweepInterval: 1, URLTTL: 1}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.tweak(&cfg)
			if err := cfg.withDefaults().Validate(); (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
