package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// /debug/pprof serves the operator only: without the cluster secret as
// bearer token every profile is refused, with it they are served.
func TestNode_Profiles_NeedTheClusterSecret(t *testing.T) {
	n := startNode(t, testConfig(t))
	get := func(path, auth string) (int, string) {
		t.Helper()
		req := must(http.NewRequestWithContext(ctxT(t), http.MethodGet,
			"http://"+n.HTTPAddr()+path, nil))(t)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp := must(http.DefaultClient.Do(req))(t)
		defer resp.Body.Close()
		body := must(io.ReadAll(resp.Body))(t)
		return resp.StatusCode, string(body)
	}
	paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine",
		"/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/profile?seconds=1",
		"/debug/pprof/trace?seconds=1"}
	for _, path := range paths {
		for _, auth := range []string{"", "Bearer wrong-secret", string(n.secret),
			"Basic " + string(n.secret)} {
			if code, _ := get(path, auth); code != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q: status %d, want 401", path, redact(auth, n),
					code)
			}
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1",
		"/debug/pprof/cmdline"} {
		code, body := get(path, "Bearer "+string(n.secret))
		if code != http.StatusOK || body == "" {
			t.Errorf("%s with the secret: status %d, %d bytes, want 200 and a profile", path,
				code, len(body))
		}
		if path == "/debug/pprof/heap?debug=1" && !strings.Contains(body, "heap profile") {
			t.Errorf("%s with the secret: not a heap profile: %.80q", path, body)
		}
	}
}

// redact hides the secret in a failure message.
func redact(auth string, n *Node) string {
	return strings.ReplaceAll(auth, string(n.secret), "SECRET")
}
