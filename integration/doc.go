// Package integration holds end-to-end tests of peername: they build the real
// binaries (cmd/coredns with the peername plugin, and the cmd/peername CLI)
// once per run, start them as separate processes on loopback ports or inside
// network namespaces they create, and query them the way any client would:
// with a DNS client over UDP and TCP, dig, and glibc's getent.
//
// What is covered: a five-node cloud (every name at every node, SRV, TXT,
// unsecured names, truncation and EDNS0, NXDOMAIN/NODATA/REFUSED, the apex,
// a SIGKILLed node's record served until it expires), unmodified
// applications in network namespaces (getent through /etc/netns resolv.conf,
// DNS SRV bootstrap), the README quick start with Corefile.example, SIGUSR1
// reloads, SERVFAIL when the overlay stalls, an IPv6-only cloud, and
// malformed DNS over UDP and TCP. The servers are built with -race when the
// tests are, and a data race or panic in their logs fails the test.
//
// Run with "go test -race ./integration/" (as root for the namespace tests;
// without root they skip); "-short" skips the package. Environment:
// PEERNAME_INTEGRATION_COREDNS=PATH tests a prebuilt CoreDNS instead of
// building ./cmd/coredns; PEERNAME_BENCH=1 enables the 20-process
// uncached-resolution benchmark. The dnsperf comparison with the hosts
// plugin is the script bench/dnsperf.sh; results are in docs/benchmarks.md.
package integration
