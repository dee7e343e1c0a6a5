//go:build race

package main

// Under the race detector the binary the system tests run is built with
// it too, so that the client's and server's goroutines are checked.
func init() { buildFlags = append(buildFlags, "-race") }
