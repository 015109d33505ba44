package httpapi

import (
	"strconv"
	"testing"
)

// TestCodeLabel_IsTheStatusAsText: the constants say what strconv says.
func TestCodeLabel_IsTheStatusAsText(t *testing.T) {
	for status := 100; status < 600; status++ {
		if got, want := codeLabel(status), strconv.Itoa(status); got != want {
			t.Errorf("codeLabel(%d) = %q, want %q", status, got, want)
		}
	}
}
