package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// The operator's credential is the cluster secret: every node of a
// cluster holds it in <data-dir>/cluster.secret (mode 0600), it
// authenticates the nodes to each other, and the operator endpoints of a
// node's HTTP port (/cluster/status, /cluster/remove, /cluster/backup)
// take it as a bearer token. A new cluster, or a restore, makes a new one
// and prints it once.
//
// A command line is visible to every user of the machine, so the secret
// is best given as a file (--cluster-secret-file) or in the environment
// (SCHAT_CLUSTER_SECRET); --cluster-secret on the command line is for
// tests and throwaway clusters.

// secretFlags are the flags that give the cluster secret; use is what it
// is needed for.
func secretFlags(use string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cluster-secret", EnvVars: []string{"SCHAT_CLUSTER_SECRET"},
			Usage: "the cluster's secret, " + use + "; a command line is visible to " +
				"other users: prefer the environment or --cluster-secret-file"},
		&cli.StringFlag{Name: "cluster-secret-file", EnvVars: []string{"SCHAT_CLUSTER_SECRET_FILE"},
			Usage: "read the cluster's secret from this file (as a node keeps it in " +
				"<data-dir>/cluster.secret)"},
	}
}

// errTwoSecrets means both ways of giving the secret were used.
var errTwoSecrets = errors.New("give the cluster secret once: --cluster-secret or " +
	"--cluster-secret-file, not both")

// clusterSecret returns the secret secretFlags give, or "" if none.
func clusterSecret(c *cli.Context) (string, error) {
	path, given := c.String("cluster-secret-file"), c.String("cluster-secret")
	switch {
	case path != "" && given != "":
		return "", errTwoSecrets
	case path == "":
		return strings.TrimSpace(given), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--cluster-secret-file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--cluster-secret-file: %s is empty", path)
	}
	return s, nil
}

// printNewSecret shows a secret that a new cluster or a restore made, once,
// on standard output and never in a log. The line ends with the secret,
// for scripts to take.
func printNewSecret(dataDir string, secret []byte) {
	fmt.Printf("new cluster secret (kept in %s; nodes that join need it, as "+
		"SCHAT_CLUSTER_SECRET or --cluster-secret-file): %s\n",
		filepath.Join(dataDir, "cluster.secret"), secret)
}
