package peername

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// TestQueryMetrics checks that every query is counted once, under its
// result, for the server that handled it.
func TestQueryMetrics(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	www := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	})
	h := newHandler(t, newMapSearcher(www), t0.Add(time.Minute))
	broken := newHandler(t, &mapSearcher{err: errors.New("down")}, t0)
	const server = "dns://metrics-test:53"
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: server})
	queries := []struct {
		h     *Peername
		qname string
		qtype uint16
	}{
		{h, www.Name.DNS("peer.alt."), dns.TypeA},              // answer
		{h, www.Name.DNS("peer.alt."), dns.TypeA},              // answer (cached)
		{h, www.Name.DNS("peer.alt."), dns.TypeAAAA},           // nodata
		{h, "nobody.0.peer.alt.", dns.TypeA},                   // nxdomain
		{h, "example.org.", dns.TypeA},                         // refused
		{broken, www.Name.DNS("peer.alt."), dns.TypeA},         // servfail
		{broken, "peer.alt.", dns.TypeSOA},                     // answer from the apex
		{broken, "0.peer.alt.", dns.TypeA},                     // nodata (empty non-terminal)
		{broken, "x.y.z.w.v.peer.alt.", dns.TypeTXT},           // nxdomain (not a peer name)
		{broken, "example.org.", dns.TypeA},                    // refused
		{broken, "printer.0.peer.alt.", dns.TypeSRV},           // servfail
		{broken, "_ssh._tcp.printer.0.peer.alt.", dns.TypeSRV}, // servfail
	}
	count := func(result string) float64 {
		var m dto.Metric
		if err := queryCount.WithLabelValues(server, result).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	results := []string{resultAnswer, resultNoData, resultNXDomain, resultRefused, resultServFail, resultFallthrough}
	before := map[string]float64{}
	for _, r := range results {
		before[r] = count(r)
	}
	for _, q := range queries {
		m := new(dns.Msg)
		m.SetQuestion(q.qname, q.qtype)
		_, _ = q.h.ServeDNS(ctx, dnstest.NewRecorder(&test.ResponseWriter{}), m)
	}
	want := map[string]float64{
		resultAnswer: 3, resultNoData: 2, resultNXDomain: 2, resultRefused: 2, resultServFail: 3, resultFallthrough: 0,
	}
	for result, n := range want {
		if got := count(result) - before[result]; got != n {
			t.Errorf("queries_total{result=%q} = %v, want %v", result, got, n)
		}
	}
}

func counterValue(t *testing.T, label, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := droppedCount.WithLabelValues(label, reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestAddDropped: dropped_total follows the node's cumulative counts, adding
// only their increase at each refresh.
func TestAddDropped(t *testing.T) {
	const label = "test-add-dropped"
	last := map[string]uint64{}
	steps := []struct {
		now  map[string]uint64
		want map[string]float64
	}{
		{map[string]uint64{dropPuzzle: 3, dropPrefixCap: 0}, map[string]float64{dropPuzzle: 3, dropPrefixCap: 0}},
		{map[string]uint64{dropPuzzle: 3, dropPrefixCap: 5}, map[string]float64{dropPuzzle: 3, dropPrefixCap: 5}},
		{map[string]uint64{dropPuzzle: 10, dropPrefixCap: 5}, map[string]float64{dropPuzzle: 10, dropPrefixCap: 5}},
	}
	// The counters are process-wide: compare with their values before
	// (a -count 2 run finds them where the first run left them).
	base := map[string]float64{}
	for reason := range steps[0].want {
		base[reason] = counterValue(t, label, reason)
	}
	for i, st := range steps {
		addDropped(label, last, st.now)
		for reason, want := range st.want {
			if got := counterValue(t, label, reason) - base[reason]; got != want {
				t.Errorf("step %d: dropped_total{reason=%q} = %v, want %v", i, reason, got, want)
			}
		}
	}
}

// TestExportReplicas: own_replicas has a series for each name the node
// publishes, at the count of replicas holding it, and loses it when the
// name is no longer published.
func TestExportReplicas(t *testing.T) {
	const label = "test-export-replicas"
	f := newFakeNet()
	f.peers = 3
	alice := testIdentity(7)
	www := record(t, alice, "www", true, nil)
	f.store[www.Name.Key()] = []*records.Record{www}
	s := &sharedNode{node: &fakeNode{net: f}, claims: map[identity.Name]int{www.Name: 1}}
	gauge := func() float64 {
		var m dto.Metric
		g, err := ownReplicas.GetMetricWithLabelValues(label, www.Name.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	exported := map[string]bool{}
	s.exportReplicas(label, exported)
	if got := gauge(); got != 3 || !exported[www.Name.String()] {
		t.Fatalf("own_replicas = %v (exported %v), want 3", got, exported)
	}
	s.claims = map[identity.Name]int{}
	s.exportReplicas(label, exported)
	if len(exported) != 0 {
		t.Fatalf("series left for an unpublished name: %v", exported)
	}
	if ownReplicas.DeleteLabelValues(label, www.Name.String()) {
		t.Error("own_replicas kept its series after the name was withdrawn")
	}
}
