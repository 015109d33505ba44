package partition

// WithOnStep returns r that calls f at the pause's steps: "presplit" between
// the economy's two pre-splits, "fence" before the
// first fence, "drain" once every fence has reached its copy, before the
// drain, "sequences" once every subscription is dropped, "split" once
// every claim has moved, "switch" once every partition's economy is split,
// "record" after the switch, before it is recorded on the partitions,
// "forget" after the checks before the forget, right before it.
func WithOnStep(r Resharding, f func(step string)) Resharding {
	r.onStep = f
	return r
}

// WithoutPreSplit returns r that splits the whole gift economy inside the
// pause, as before partition migration 17.
func WithoutPreSplit(r Resharding) Resharding {
	r.onePhase = true
	return r
}
