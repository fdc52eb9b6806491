//go:build meshcache_plainget

package transport

// fastGet is false: Get requests and responses take the generated code
// like every other message (see fastget.go).
const fastGet = false
