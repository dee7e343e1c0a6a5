package node

import (
	"net/http"
	"net/http/pprof"
)

// routeProfiles serves Go's runtime profiles (net/http/pprof) under
// /debug/pprof/ to the cluster's operator only: a profile shows what the
// node is doing, and a CPU profile costs it CPU while it runs. Fetch one
// with the cluster secret as bearer token, for instance
//
//	curl -H "Authorization: Bearer $SECRET" http://HOST:7480/debug/pprof/profile?seconds=10
func (n *Node) routeProfiles(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", n.adminOnly(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", n.adminOnly(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", n.adminOnly(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", n.adminOnly(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", n.adminOnly(pprof.Trace))
}
