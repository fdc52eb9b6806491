// Package ring maps each key to the member of a cluster that owns it.
//
// A [Ring] is an immutable snapshot built by [New] from a list of member names
// and a [Config]. Keys hash (xxhash64) into a fixed number of partitions, and
// each partition is placed on a member by consistent hashing with bounded
// loads (github.com/buraksezer/consistent v1.0.0): no member owns more than
// LoadFactor times its fair share of partitions, and adding or removing one
// member moves only about 1/n of the keys.
//
// # Use
//
// Build a new Ring whenever membership changes and publish it with an
// atomic pointer; readers load the pointer and call [Ring.Owner], which takes
// no lock and does not allocate:
//
//	var cur atomic.Pointer[ring.Ring]
//	r, err := ring.New([]string{"10.0.0.4:7946", "10.0.0.5:7946"}, ring.Config{})
//	if err != nil { ... }
//	prev := cur.Swap(r) // keep prev for hand-off
//	owner := cur.Load().Owner("users/42")
//
// Every process that builds a Ring from the same member names and the same
// Config gets the same owners, whatever the order of the names. Nodes exchange
// [Ring.Fingerprint] (or [Config.Fingerprint]) to refuse peers whose settings
// differ and would route keys elsewhere.
//
// # Errors
//
// New never panics. It rejects configurations that consistent would panic on,
// or that cannot place every partition, with [ErrInvalidConfig], and empty or
// duplicate member names with [ErrInvalidMember].
//
// # Concurrency
//
// A Ring is never modified after New returns, so all its methods are safe for
// concurrent use by multiple goroutines. Methods that return slices or maps
// return copies that the caller owns. A nil *Ring behaves as an empty ring
// with the default Config.
package ring
