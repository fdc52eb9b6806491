// Package wirepb holds the protobuf messages of meshcache's peer transport,
// generated from wire.proto. It is internal to package transport: no type of
// this package appears in an exported signature.
//
// The generated code is checked in; regenerate it with protoc and
// protoc-gen-go v1.36.12 (the version in go.mod):
//
//	go generate ./transport/internal/wirepb/
package wirepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto
