package sim

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"
)

// benchNodes lets a benchmark run simulate a larger network:
//
//	go test ./overlay/sim -run X -bench BenchmarkSimLarge -benchtime 1x -sim.nodes 10000
var (
	benchNodes   = flag.Int("sim.nodes", 2000, "nodes of BenchmarkSimLarge")
	benchLookups = flag.Int("sim.lookups", 10000, "lookups of BenchmarkSimLarge")
	benchFail    = flag.Float64("sim.fail", 0, "silent failures of BenchmarkSimLarge")
	benchLoss    = flag.Float64("sim.loss", 0, "datagram loss of BenchmarkSimLarge")
)

func benchSim(b *testing.B, cfg Config) {
	b.Helper()
	var r *Report
	for b.Loop() {
		w, err := NewWorld(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if r, err = w.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(r.SuccessRate, "success")
	b.ReportMetric(r.HopsMean, "hops/lookup")
	b.ReportMetric(r.HopsP99, "hops-p99")
	b.ReportMetric(r.LatencyP50ms, "lat-p50-ms")
	b.ReportMetric(r.LatencyP99ms, "lat-p99-ms")
	b.ReportMetric(r.MsgsPerNodePerS, "msgs/node/s")
	b.ReportMetric(r.BytesPerNodePerS, "bytes/node/s")
	b.ReportMetric(r.HeapBytesPerNode, "heap-bytes/node")
	b.ReportMetric(float64(r.Events)/r.WallS, "events/s")
}

// BenchmarkSimSmall simulates 200 nodes, 1,000 lookups, with 10% silent
// failures and 2% loss: the cost of a whole small run and its figures.
func BenchmarkSimSmall(b *testing.B) {
	benchSim(b, Config{
		Seed: 1, Nodes: 200, Lookups: 1000, Fail: 0.1,
		LookupPhase: 60 * time.Second,
		Net:         Network{RTTMin: 20 * time.Millisecond, RTTMax: 200 * time.Millisecond, Loss: 0.02},
	})
}

// BenchmarkSimLarge is the -sim.* sized run (default: the 2,000-node
// benchmark), with progress on stderr.
func BenchmarkSimLarge(b *testing.B) {
	benchSim(b, Config{
		Seed: 1, Nodes: *benchNodes, Lookups: *benchLookups, Fail: *benchFail,
		Net:      Network{RTTMin: 20 * time.Millisecond, RTTMax: 200 * time.Millisecond, Loss: *benchLoss},
		Progress: os.Stderr,
	})
}
