package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/schat/schat/transport"
)

// Secrets the log test uses, each distinct enough that finding one in a
// log can only mean it leaked.
const (
	pwProtoss   = "Pw-protoss-5e1c9"
	pwProtoss2  = "Pw-protoss-new-3f8d"
	pwProtoss3  = "Pw-protoss-last-0b6a"
	pwZerg      = "Pw-zerg-77ab2"
	joinPw      = "Jp-sc2-9c4e1"
	joinPwWrong = "Jp-wrong-a1b2"
	joinPw2     = "Jp-sc2-next-44d0"
	applyMsg    = "Body-letmein-6c31"
	forgedToken = "Tok-forged-e9f0a7"
	badJSONPw   = "Pw-in-bad-json-2d7c"
)

var bodies = []string{"Body-hello-4d2f", "Body-again-91ce", "Body-no1-8e7a",
	"Body-no2-0f3b", "Body-no3-c6d8"}

// TestServe_NoSecretsInLog replays v1's demo, password changes, a join
// password change, resumes and undecodable frames against `schat serve` at
// debug level, in text and in JSON, and finds none of the passwords,
// tokens, join passwords or message bodies in its log.
func TestServe_NoSecretsInLog(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOptions{extra: []string{"--log-format", format,
				"--log-level", "debug", "--rate-per-minute", "600"}})
			secrets := replaySecrets(t, srv)
			srv.stop(t)
			log := srv.logs.String()
			if !strings.Contains(log, "connection opened") {
				t.Fatalf("no debug line in the log; log:\n%s", log)
			}
			for _, s := range secrets {
				if strings.Contains(log, s) {
					t.Errorf("log holds secret %q; log:\n%s", s, log)
				}
			}
		})
	}
}

// replaySecrets drives the server and returns every secret it used.
func replaySecrets(t *testing.T, srv *testServer) []string {
	replayDemo(t, srv.clientAddr)
	tokens := changePasswords(t, srv.clientAddr)
	sendBadFrames(t, srv.httpAddr)
	return append(append([]string{pwProtoss, pwProtoss2, pwProtoss3, pwZerg, joinPw,
		joinPwWrong, joinPw2, applyMsg, forgedToken, badJSONPw}, bodies...), tokens...)
}

// replayDemo runs v1's demo with the test's secrets through `schat chat`.
func replayDemo(t *testing.T, addr string) {
	r := script(t, addr, fmt.Sprintf(`
		reg protoss %s zelot 1 shenzhen
		login protoss %[1]s
		create sc2 %s
	`, pwProtoss, joinPw))
	gid := r.results[2].num("grp_id")
	r = script(t, addr, fmt.Sprintf(`
		reg zerg %s zergling 1 chengdu
		login zerg %[1]s
		login zerg %s
		apply %d %s %s
		apply %[3]d %[6]s %[5]s
	`, pwZerg, pwProtoss, gid, joinPwWrong, applyMsg, joinPw))
	wantResult(t, r.results[2], "login", "WRONG_PASSWORD")
	wantResult(t, r.results[3], "apply", "WRONG_PASSWORD")
	wantResult(t, r.results[4], "apply", codeOK)
	zerg := r.results[0].num("uid")
	script(t, addr, fmt.Sprintf(`
		login protoss %s
		audit %d sc2 %d 1
	`, pwProtoss, gid, zerg))
	script(t, addr, fmt.Sprintf(`
		login zerg %s
		chat 0 %d %s
		chat 0 %[2]d %s
		logout
		login zerg %[1]s
		chat 0 %[2]d %s
		chat 0 %[2]d %s
		chat 0 %[2]d %s
	`, pwZerg, gid, bodies[0], bodies[1], bodies[2], bodies[3], bodies[4]))
	r = script(t, addr, fmt.Sprintf(`
		login protoss %s
		his %d
		sync %[2]d
		recall %[2]d 3
		g_attr %[2]d 5 %s
		passwd %[1]s %[4]s
	`, pwProtoss, gid, joinPw2, pwProtoss2))
	wantResult(t, r.results[5], "passwd", codeOK)
}

// changePasswords logs in and changes the password through the Go client,
// resuming with each token and a forged one, and returns the tokens.
func changePasswords(t *testing.T, addr string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	dial := func() *transport.Client {
		c, err := transport.Dial(ctx, transport.ClientConfig{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	l, err := c.Login(ctx, "protoss", pwProtoss2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial().Resume(ctx, l.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangePassword(ctx, pwProtoss, pwProtoss3); err == nil {
		t.Fatal("a password change with a wrong old password succeeded")
	}
	cp, err := c.ChangePassword(ctx, pwProtoss2, pwProtoss3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial().Resume(ctx, cp.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := dial().Resume(ctx, forgedToken); err == nil {
		t.Fatal("a forged token resumed a session")
	}
	return []string{l.Token, cp.Token}
}

// sendBadFrames sends WebSocket text frames that are not valid protojson
// and quote a password, which a decoder's error message could repeat.
func sendBadFrames(t *testing.T, httpAddr string) {
	for _, frame := range []string{
		`{"id":"` + badJSONPw + `"}`,
		`{"id":1,"login":{"loginName":"protoss","password":` + badJSONPw + `}}`,
		`{"id":1,"` + badJSONPw + `":1}`,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, _, err := websocket.Dial(ctx, "ws://"+httpAddr+"/ws", nil)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		// The server answers or closes; either way the frame was read.
		ws.Read(ctx)
		ws.CloseNow()
		cancel()
	}
}
