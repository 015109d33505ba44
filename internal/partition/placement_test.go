package partition_test

import (
	"testing"

	"giftd/internal/partition"
)

// The vectors of docs/scale-out.md#placement, computed outside Go (Python's
// hashlib: struct.unpack('>i', sha256(id.encode()).digest()[:4])).
func TestPlacement_Vectors(t *testing.T) {
	for _, tc := range []struct {
		id        string
		placement int32
		of2, of4  int
	}{
		{"", -474954686, 0, 2},
		{"a", -896040686, 0, 2},
		{"demo-user", -826332884, 0, 0},
		{"用户", 219028102, 0, 2},
		{"u1", -1149107443, 1, 1},
		{"u2", 1822556872, 0, 0},
	} {
		if got := partition.Placement(tc.id); got != tc.placement {
			t.Errorf("Placement(%q) = %d; want %d", tc.id, got, tc.placement)
		}
		if got := partition.For(tc.id, 2); got != tc.of2 {
			t.Errorf("For(%q, 2) = %d; want %d", tc.id, got, tc.of2)
		}
		if got := partition.For(tc.id, 4); got != tc.of4 {
			t.Errorf("For(%q, 4) = %d; want %d", tc.id, got, tc.of4)
		}
		if got := partition.For(tc.id, 1); got != 0 {
			t.Errorf("For(%q, 1) = %d; want 0", tc.id, got)
		}
	}
}

func TestFor_PanicsOnACountThatIsNoPowerOfTwo(t *testing.T) {
	for _, n := range []int{0, 3, 6, -2} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("For(id, %d) did not panic", n)
				}
			}()
			partition.For("u1", n)
		}()
	}
}
