// Package sim is peername's discrete-event simulator: it runs thousands of
// overlay cores (the same deterministic state machine the UDP driver runs) in
// one process on a virtual clock and a virtual network with per-link latency,
// loss, duplication, reordering, partitions, silent failures and joins on a
// schedule. One seed decides every choice, so a run replays bit for bit and a
// failing run is reported with the seed that reproduces it. Hostile nodes
// (hostile.go, attack.go) are real cores that lie through the core's one hook,
// overlay.Config.Intercept, or misbehave from outside it; no attack code is
// in the core or the driver. The command line, `peername sim`, is in
// cmd/peername (sim.go, simplot.go).
package sim
