package overlay

// Timer kinds.
const (
	tRequest    = 1 // a request's timeout (id = request ID)
	tOpDeadline = 2 // an operation's deadline (id = OpID)
	tGrace      = 3 // a Resolve's value grace period (id = OpID)
	tTick       = 4 // periodic maintenance
	tSoft       = 5 // a lookup request's soft timeout (id = request ID)
	tReplicate  = 6 // a retry of unacknowledged replication STOREs
)

type timer struct {
	at   int64
	kind uint8
	id   uint64
}

// timerHeap is a binary min-heap of timers ordered by (at, kind, id), so that
// equal deadlines fire in a deterministic order. Entries of finished requests
// and operations are not removed; they are skipped when they fire.
type timerHeap []timer

func (a timer) less(b timer) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.id < b.id
}

func (h *timerHeap) push(t timer) {
	*h = append(*h, t)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *timerHeap) pop() timer {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].less(s[l]) {
			m = r
		}
		if !s[m].less(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
