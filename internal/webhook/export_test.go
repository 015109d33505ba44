package webhook

import "time"

// Backoff is d's wait after attempts failures.
func Backoff(d *Deliverer, attempts int) time.Duration { return d.backoff(attempts) }
