// Package integration holds end-to-end tests of peername: they build the real
// binaries (cmd/coredns with the peername plugin, and the cmd/peername CLI),
// start them as separate processes on loopback ports or inside network
// namespaces, and query them the way any client would, with a DNS client,
// dig and getent. The package has no non-test code.
//
// Run with "go test -race ./integration/"; "-short" skips it. Set
// PEERNAME_BENCH=1 to run the 20-process resolution latency benchmark; the
// dnsperf comparison with the hosts plugin is the script bench/dnsperf.sh.
package integration
