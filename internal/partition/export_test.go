package partition

// WithBeforePause returns r that runs f just before its first fence.
func WithBeforePause(r Resharding, f func()) Resharding {
	r.beforePause = f
	return r
}
