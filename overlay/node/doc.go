// Package node is the UDP driver that runs the overlay's deterministic core
// (package overlay) on real sockets and real time: this is what ships in the
// CoreDNS plugin and the CLI. A Node binds IPv4 and IPv6 sockets, feeds
// received datagrams, timer firings and API calls to one event-loop
// goroutine that owns the Core, sends what the core emits (fragmenting
// messages above MaxDatagram, frag.go), finds seeds through bootstrap
// providers (overlay/bootstrap) and, given a state directory, keeps the
// node's names, stored records and contacts across restarts (overlay/state).
//
// Every method of Node is safe for concurrent use and takes a context for
// whatever waits.
package node
