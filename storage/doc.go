// Package storage is schat's on-disk layout: the data directory, the bbolt
// buckets each shard's state machine keeps, their key encodings, and the
// snapshot archive format that carries a shard's state between nodes.
//
// Every function that takes a *bbolt.Tx expects the caller to own the
// transaction; none of them opens one.
package storage
