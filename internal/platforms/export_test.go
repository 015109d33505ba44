package platforms

// CrashAfter makes m's run stop right after the named step, as if the
// process had died there, the first time the step happens.
func CrashAfter(m *Mover, step string) {
	fired := false
	m.crash = func(s string) bool {
		if s == step && !fired {
			fired = true
			return true
		}
		return false
	}
}
