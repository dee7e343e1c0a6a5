// Package pb holds the generated Go code for schat's protocol buffers: the
// client protocol, the replicated commands and the stored records. The
// schema is schat.proto; never edit the generated file by hand.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative schat.proto
