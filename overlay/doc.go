// Package overlay is peername's DRT: a Kademlia-family structured overlay whose
// nodes are identified by the hash of their Ed25519 keys, that finds the nodes
// responsible for a 256-bit key and stores, replicates and returns signed
// records from package records.
//
// The protocol logic lives in Core, a deterministic event-driven state machine:
// it consumes datagrams, timer firings and API calls (each carrying the current
// time) and produces datagrams to send, a next-timer deadline and completed
// operations. It owns no goroutines, sockets or clocks and draws randomness only
// from a PCG seeded by Config.Seed, so the UDP driver (overlay/node) and the
// simulator (overlay/sim) run the very same code; purity_test.go makes the
// compiler keep it that way. The one hook for behaviour that is not the
// protocol's, Config.Intercept, exists for the simulator's hostile nodes. The
// wire format is described in docs/protocol.md.
package overlay
