// Package sim is peername's discrete-event simulator: it runs thousands of
// overlay cores (the same deterministic state machine the UDP driver runs) in
// one process on a virtual clock and a virtual network with per-link latency,
// loss, duplication, reordering, partitions, silent failures and joins on a
// schedule. One seed decides every choice, so a run replays bit for bit and a
// failing run is reported with the seed that reproduces it. Main implements
// the `peername sim` command on top of it.
package sim
