package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
	"github.com/urfave/cli/v2"

	"github.com/schat/schat/node"
)

func clusterCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7480",
			EnvVars: []string{"SCHAT_ADMIN_ADDR"},
			Usage:   "HTTP address of any node"},
		&cli.StringFlag{Name: "data-dir", EnvVars: []string{"SCHAT_DATA_DIR"},
			Usage: "read the secret from this node's data directory instead"},
	}, secretFlags("the operator's credential")...)
	return &cli.Command{
		Name:  "cluster",
		Usage: "inspect and change a cluster's membership",
		Subcommands: []*cli.Command{
			withAdminTLS(&cli.Command{Name: "status",
				Usage: "nodes, and for each shard its leader and every node's replica of it",
				Flags: append(slices.Clone(flags), &cli.BoolFlag{Name: "json",
					Usage: "print the status as the node reports it, in JSON"}),
				Action: clusterStatus}),
			withAdminTLS(&cli.Command{Name: "remove", Usage: "remove a node from every shard",
				ArgsUsage: "NODE_ID", Flags: flags, Action: clusterRemove}),
			{Name: "recover", Usage: "after losing quorum for good: rewrite a stopped node's " +
				"membership to the surviving nodes",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Required: true,
						EnvVars: []string{"SCHAT_DATA_DIR"},
						Usage:   "data directory of the stopped node"},
					&cli.StringSliceFlag{Name: "peers", Required: true,
						Usage: "the surviving nodes, ID=RAFT_ADDR[,ID=RAFT_ADDR], " +
							"this one included"},
				},
				Action: clusterRecover},
		},
	}
}

// adminRequest sends an authenticated request to a node's HTTP port and
// returns the body of its answer.
func adminRequest(c *cli.Context, method, path string) ([]byte, error) {
	secret, err := adminSecret(c)
	if err != nil {
		return nil, err
	}
	admin, err := newAdminClient(c, secret, 30*time.Second)
	if err != nil {
		return nil, err
	}
	resp, err := admin.do(c.Context, method, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
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
	if c.Bool("json") {
		_, err := os.Stdout.Write(body)
		return err
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	return printStatus(os.Stdout, &st)
}

// printStatus writes the status as three tables: the members, each
// shard's leader, and every replica of every shard.
func printStatus(out io.Writer, st *node.Status) error {
	fmt.Fprintf(out, "cluster %s, seen from %s (%s)\n\n", st.ClusterID, st.NodeID, st.RaftAddr)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDRESS\tSUFFRAGE\tREACHABLE")
	for _, s := range st.Servers {
		reach := "yes"
		if !s.Reachable {
			reach = "no: " + s.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.ID, s.Address, s.Suffrage, reach)
	}
	fmt.Fprintln(w, "\nSHARD\tLEADER\tTERM\tCOMMIT")
	for _, s := range st.Shards {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", s.Shard, orNone(s.Leader), s.Term, s.CommitIndex)
	}
	fmt.Fprintln(w, "\nSHARD\tNODE\tSTATE\tTERM\tLAST INDEX\tCOMMIT\tAPPLIED\tLAG\tLAST CONTACT")
	for _, s := range st.Shards {
		for _, r := range s.Replicas {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Shard, r.Node, r.State,
				r.Term, r.LastIndex, r.CommitIndex, r.AppliedIndex, r.Lag, lastContact(r))
		}
	}
	return w.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// lastContact says how long ago a replica last heard from its leader.
func lastContact(r node.ReplicaInfo) string {
	switch {
	case r.State == "Leader":
		return "-"
	case r.LastContactMs < 0:
		return "never"
	}
	return (time.Duration(r.LastContactMs) * time.Millisecond).String() + " ago"
}

func clusterRemove(c *cli.Context) error {
	id := c.Args().First()
	if id == "" {
		return fmt.Errorf("usage: schat cluster remove NODE_ID")
	}
	if _, err := adminRequest(c, http.MethodPost,
		"/cluster/remove?node="+url.QueryEscape(id)); err != nil {
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
