// Command schat is the schat server and its command-line client.
//
//	schat serve             run a node (a complete deployment on its own)
//	schat chat --addr ...   talk to a server interactively or from a script
//	schat bench SCENARIO    measure a node or cluster under load
//	schat backup, restore   move a whole deployment through one file
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := &cli.App{
		Name:    "schat",
		Usage:   "a self-hosted group-chat server",
		Version: version,
		Commands: []*cli.Command{
			serveCommand(),
			chatCommand(),
			clusterCommand(),
			benchCommand(),
			withAdminTLS(backupCommand()),
			snapshotCommand(),
			restoreCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "schat:", err)
		os.Exit(1)
	}
}
