package node

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	pb "github.com/schat/schat/proto"
)

// scrape reads n's /metrics into series -> value.
func scrape(t testing.TB, n *Node) map[string]float64 {
	t.Helper()
	resp := must(http.Get("http://" + n.HTTPAddr() + "/metrics"))(t)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, val, ok := strings.Cut(sc.Text(), " ")
		if v, err := strconv.ParseFloat(val, 64); ok && err == nil {
			out[series] = v
		}
	}
	return out
}

// The proposer's counts of raft entries and of the commands in them are
// on /metrics per shard: sends pipelined on one connection make at least
// one entry, holding every send.
func TestNode_Metrics_EntriesAndCommands(t *testing.T) {
	n := startNode(t, testConfig(t))
	c, _ := user(t, n.ClientAddr(), false, "ann")
	ctx := ctxT(t)
	g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "counted"}))(t)
	const series = `schat_shard_%s_total{shard="group-1"}`
	entries, commands := fmt.Sprintf(series, "entries"), fmt.Sprintf(series, "commands")
	before := scrape(t, n)
	const sends = 20
	errs := make(chan error, sends)
	for i := range sends {
		go func() {
			_, err := c.Send(ctx, g.GroupId, fmt.Sprintf("message %d", i), "")
			errs <- err
		}()
	}
	for range sends {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	after := scrape(t, n)
	dEntries, dCommands := after[entries]-before[entries], after[commands]-before[commands]
	if dCommands != sends || dEntries < 1 || dEntries > sends {
		t.Fatalf("%d sends counted as %v commands in %v entries, want %d commands in 1 to %d",
			sends, dCommands, dEntries, sends, sends)
	}
}
