package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
	"github.com/urfave/cli/v2"

	"github.com/schat/schat/node"
)

func clusterCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7480", EnvVars: []string{"SCHAT_ADMIN_ADDR"},
			Usage: "HTTP address of any node"},
		&cli.StringFlag{Name: "data-dir", EnvVars: []string{"SCHAT_DATA_DIR"},
			Usage: "read the secret from this node's data directory instead"},
	}, secretFlags("the operator's credential")...)
	return &cli.Command{
		Name:  "cluster",
		Usage: "inspect and change a cluster's membership",
		Subcommands: []*cli.Command{
			{Name: "status", Usage: "nodes, and each shard's leader, term and indexes",
				Flags: flags, Action: clusterStatus},
			{Name: "remove", Usage: "remove a node from every shard", ArgsUsage: "NODE_ID",
				Flags: flags, Action: clusterRemove},
			{Name: "recover", Usage: "after losing quorum for good: rewrite a stopped node's " +
				"membership to the surviving nodes",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Required: true, EnvVars: []string{"SCHAT_DATA_DIR"},
						Usage: "data directory of the stopped node"},
					&cli.StringSliceFlag{Name: "peers", Required: true,
						Usage: "the surviving nodes, ID=RAFT_ADDR[,ID=RAFT_ADDR], this one included"},
				},
				Action: clusterRecover},
		},
	}
}

// adminRequest sends an authenticated request to a node's HTTP port.
func adminRequest(c *cli.Context, method, path string) ([]byte, error) {
	secret, err := adminSecret(c)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(c.Context, method, "http://"+c.String("addr")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// adminSecret is the operator's credential: the secret secretFlags give,
// or the one kept in --data-dir.
func adminSecret(c *cli.Context) (string, error) {
	if s, err := clusterSecret(c); s != "" || err != nil {
		return s, err
	}
	if dir := c.String("data-dir"); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "cluster.secret"))
		return strings.TrimSpace(string(b)), err
	}
	return "", fmt.Errorf("give the cluster secret: SCHAT_CLUSTER_SECRET, " +
		"--cluster-secret-file, --cluster-secret or --data-dir")
}

func clusterStatus(c *cli.Context) error {
	body, err := adminRequest(c, http.MethodGet, "/cluster/status")
	if err != nil {
		return err
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	fmt.Printf("cluster %s, seen from %s (%s)\n\n", st.ClusterID, st.NodeID, st.RaftAddr)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDRESS\tSUFFRAGE")
	for _, s := range st.Servers {
		fmt.Fprintf(w, "%s\t%s\t%s\n", s.ID, s.Address, s.Suffrage)
	}
	fmt.Fprintln(w, "\nSHARD\tLEADER\tTERM\tCOMMIT\tAPPLIED\tLAG\tSTATE HERE\tLAST CONTACT")
	for _, s := range st.Shards {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Shard, s.Leader, s.Term,
			s.CommitIndex, s.AppliedIndex, s.Lag, s.State, s.LastContact)
	}
	return w.Flush()
}

func clusterRemove(c *cli.Context) error {
	id := c.Args().First()
	if id == "" {
		return fmt.Errorf("usage: schat cluster remove NODE_ID")
	}
	if _, err := adminRequest(c, http.MethodPost, "/cluster/remove?node="+url.QueryEscape(id)); err != nil {
		return err
	}
	fmt.Printf("removed %s\n", id)
	return nil
}

func clusterRecover(c *cli.Context) error {
	var servers []raft.Server
	for _, p := range splitList(c.StringSlice("peers")) {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return fmt.Errorf("--peers: %q is not ID=RAFT_ADDR", p)
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id),
			Address: raft.ServerAddress(addr)})
	}
	logger, err := newLogger("text", "info")
	if err != nil {
		return err
	}
	if err := node.Recover(c.String("data-dir"), servers, logger); err != nil {
		return err
	}
	fmt.Printf("membership of every shard in %s is now %s; start the node\n",
		c.String("data-dir"), strings.Join(splitList(c.StringSlice("peers")), ","))
	return nil
}
