package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestHTTPBase(t *testing.T) {
	tests := []struct {
		flag, addr string
		tls        bool
		want       string
	}{
		{"", "127.0.0.1:7420", false, "http://127.0.0.1:7480"},
		{"", "chat.example:7420", true, "https://chat.example:7480"},
		{"", "ws://h:8080/ws", false, "http://h:8080"},
		{"", "wss://h/ws", false, "https://h"},
		{"http://x:1", "127.0.0.1:7420", false, "http://x:1"},
	}
	for _, tc := range tests {
		if got := httpBase(tc.flag, tc.addr, tc.tls); got != tc.want {
			t.Errorf("httpBase(%q, %q, %v): got %q, want %q",
				tc.flag, tc.addr, tc.tls, got, tc.want)
		}
	}
}

// TestChat_Files sends an image into a group, sets avatars and fetches
// the file back, through `schat chat` against a real server.
func TestChat_Files(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	dir := t.TempDir()
	pic := filepath.Join(dir, "pic.png")
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 40, 30))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pic, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	httpFlag := "--http=http://" + srv.httpAddr

	r := script(t, srv.clientAddr, fmt.Sprintf(`
		reg protoss 123 zelot 1 shenzhen
		login protoss 123
		create club -
	`), httpFlag)
	gid := r.results[2].num("grp_id")
	out := filepath.Join(dir, "back.png")
	r = script(t, srv.clientAddr, fmt.Sprintf(`
		login protoss 123
		chat 1 %d %s a picture
		chat 2 %[1]d %[2]s
		avatar %[2]s
		g_attr %[1]d 4 %[2]s
		his %[1]d
	`, gid, pic), httpFlag)
	sent := r.results[1]
	wantResult(t, sent, "chat", codeOK)
	if sent.str("mime") != "image/png" || sent.str("dims") != "40x30" {
		t.Fatalf("got sent image %v, want a 40x30 PNG", sent)
	}
	wantResult(t, r.results[2], "chat", "INVALID_ARGUMENT") // a PNG is no voice
	if r.results[3].str("avatar") == "" || r.results[4].str("avatar") == "" {
		t.Fatalf("got %v and %v, want the user's and the group's avatar set",
			r.results[3], r.results[4])
	}
	msgs := r.results[5].list("messages")
	if f := msgs[len(msgs)-1]["file"]; f == nil || msgs[len(msgs)-1].str("text") != "a picture" {
		t.Fatalf("got last message %v, want the picture with its caption", msgs[len(msgs)-1])
	}

	id := sent.str("file_id")
	r = script(t, srv.clientAddr, fmt.Sprintf(`
		reg zerg 123 zergling 1 chengdu
		login zerg 123
		fetch %s %s
		login protoss 123
		fetch %[1]s %[2]s
		fetch %[1]s %[2]s
	`, id, out), httpFlag)
	wantResult(t, r.results[2], "fetch", "NOT_MEMBER")
	wantResult(t, r.results[4], "fetch", codeOK)
	wantResult(t, r.results[5], "fetch", codeFile) // the file exists now
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("fetched file differs from the upload (err %v)", err)
	}
}
