// Package kubernetes holds no code: its directory has the Kubernetes
// manifests and the Dockerfile of the demo node, and its test checks them
// against cmd/demo-node.
package kubernetes
