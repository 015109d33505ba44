package partition

// WithOnStep returns r that calls f at the pause's steps: "presplit" between
// the economy's two pre-splits, "precheck" before the copy check before the
// pause, "fence" before the first fence, "drain" once every fence has
// reached its copy, before the drain, "sequences" once every subscription
// is dropped, "check" before the copy check inside the pause, "split" once
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
