package sim

import (
	"testing"
	"time"
)

// crowdConfig is issue 15's flash crowd at test scale: 600 real cores
// join within one virtual second through one seed whose loop handles 125
// handshakes a second (8 ms each, 100 us per other datagram), so the crowd
// overloads it nearly fivefold.
func crowdConfig(maxWait time.Duration) Config {
	return Config{
		Seed: 15, Nodes: 600, Lookups: 200, Publishers: 0.05, LookupPhase: 10 * time.Second,
		FlashCrowd: time.Second, CrowdSeeds: 1, Settle: 60 * time.Second,
		Net: Network{RTTMin: 20 * time.Millisecond, RTTMax: 200 * time.Millisecond,
			ServiceTime: 100 * time.Microsecond, HandshakeTime: 8 * time.Millisecond,
			InboxLimit: 2048, InboxMaxWait: maxWait},
	}
}

// TestFlashCrowdJoinsEveryone: every node of the crowd joins within 60 s
// of its first try, none is left alone, and the overloaded seed shed load
// (datagrams dropped for waiting too long) rather than answer late.
func TestFlashCrowdJoinsEveryone(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("600 nodes")
	}
	r, err := runWorld(t, crowdConfig(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("crowd of %d: p50 %.0f ms, p99 %.0f ms, max %.0f ms; alone %d; %d retries; %d queued, %d stale, %d overloaded",
		r.Nodes-1, r.JoinP50ms, r.JoinP99ms, r.JoinMaxMs, r.Alone, r.JoinRetries, r.Queued, r.InboxStale, r.Overloaded)
	if r.Alone != 0 || r.JoinedIn60s != r.Nodes-1 || r.Joined != r.Nodes {
		t.Errorf("alone %d, joined within 60 s %d of %d, joined %d of %d", r.Alone, r.JoinedIn60s, r.Nodes-1, r.Joined, r.Nodes)
	}
	if r.InboxStale == 0 || r.Queued == 0 {
		t.Errorf("the seed was not overloaded: %d queued, %d stale", r.Queued, r.InboxStale)
	}
	if r.SuccessRate < 0.99 {
		t.Errorf("lookups after the crowd: %.4f ok", r.SuccessRate)
	}
}

// TestFlashCrowdWithoutStaleDrop: the same crowd against a seed that works
// through its whole backlog in order answers too late for most joiners.
func TestFlashCrowdWithoutStaleDrop(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("600 nodes")
	}
	r, err := runWorld(t, crowdConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("crowd of %d without the stale drop: p50 %.0f ms, max %.0f ms; joined within 60 s %d; alone %d",
		r.Nodes-1, r.JoinP50ms, r.JoinMaxMs, r.JoinedIn60s, r.Alone)
	if r.JoinedIn60s == r.Nodes-1 && r.Alone == 0 {
		t.Errorf("every node joined within 60 s without the stale drop; the test no longer shows what it drops for")
	}
}
