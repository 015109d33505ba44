package partition

// WithOnStep returns r that calls f at the pause's steps: "fence" before the
// first fence, "sequences" once every subscription is dropped, "split" once
// every claim has moved, "switch" once every partition's economy is split.
func WithOnStep(r Resharding, f func(step string)) Resharding {
	r.onStep = f
	return r
}
