package status

// Counts kept per target besides the states.
const (
	// CountAccepted counts events the rules service routed to a target.
	CountAccepted = "accepted"
	// CountSuperseded counts events a newer event of the same record
	// replaced before or after they settled.
	CountSuperseded = "superseded"
)

// Delta is a change of the targets' counts: +1 for the new state, -1 for
// the one left. One flat map, so that a write's delta costs one
// allocation, not one per target.
type Delta map[Counter]int64

// Counter names one count of one target.
type Counter struct {
	Target, Count string
}

// Add adds n to target's count.
func (d Delta) Add(target, count string, n int64) { d[Counter{target, count}] += n }

// Apply applies c to r like Record.Apply, and records in d how the counts
// of c's target moved: the state left and the one entered, and an event
// that c's newer event replaced.
func (d Delta) Apply(r *Record, c Change) bool {
	var prevState State
	var prevEvent string
	prev, had := r.Targets[c.Target]
	if had {
		prevState, prevEvent = prev.State, prev.EventID
	}
	if !r.Apply(c) {
		return false
	}
	cur := r.Targets[c.Target]
	switch {
	case !had:
		d.Add(c.Target, string(cur.State), 1)
	case prevEvent != cur.EventID:
		d.Add(c.Target, string(prevState), -1)
		d.Add(c.Target, CountSuperseded, 1)
		d.Add(c.Target, string(cur.State), 1)
	case prevState != cur.State:
		d.Add(c.Target, string(prevState), -1)
		d.Add(c.Target, string(cur.State), 1)
	}
	return true
}

// Merge adds o to d.
func (d Delta) Merge(o Delta) {
	for c, n := range o {
		d[c] += n
	}
}
