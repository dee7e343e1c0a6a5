package main

import (
	"syscall"
)

// raiseFileLimit lets the process open want files if it can, one per
// connection, and returns the limit it has then. Go raises the soft limit
// to the hard one by itself, but a hard limit of 20,000 or so, common in
// containers, is too low for tens of thousands of connections; raising it
// needs CAP_SYS_RESOURCE, and without it the hard limit is what remains.
func raiseFileLimit(want uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur >= want {
		return lim.Cur
	}
	next := syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next) == nil {
		return want
	}
	next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next) == nil {
		return lim.Max
	}
	return lim.Cur
}
